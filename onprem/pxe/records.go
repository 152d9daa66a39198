package pxe

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/state"
)

// State store buckets of the boot server.
const (
	// BucketInventory holds the loaded inventory under InventoryKey.
	BucketInventory = "pxe-inventory"
	// BucketRecords holds one Record per machine, keyed by MAC.
	BucketRecords = "pxe-records"
	// InventoryKey is the key of the inventory in BucketInventory.
	InventoryKey = "machines"
)

// Step is one step of a network boot.
type Step string

// Boot steps, in the order a machine takes them.
const (
	StepDHCP     Step = "dhcp"
	StepTFTP     Step = "tftp"
	StepScript   Step = "script"
	StepKernel   Step = "kernel"
	StepInitrd   Step = "initrd"
	StepIgnition Step = "ignition"
)

// Steps lists the boot steps in order.
var Steps = []Step{StepDHCP, StepTFTP, StepScript, StepKernel, StepInitrd, StepIgnition}

// StepRecord is what is known of one step of one machine.
type StepRecord struct {
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
	Count int       `json:"count"`
	// Detail: the leased address, the file, the profile.
	Detail string `json:"detail,omitempty"`
}

// Record is the boot history of one machine.
type Record struct {
	MAC   string              `json:"mac"`
	Name  string              `json:"name"`
	IP    string              `json:"ip,omitempty"`
	Steps map[Step]StepRecord `json:"steps,omitempty"`
	// Ticket names the enrollment ticket (bootstrap/enroll) of the last script the machine was
	// given.
	Ticket *TicketRef `json:"ticket,omitempty"`
}

// TicketRef names a machine's enrollment ticket, and the arm it was issued under.
type TicketRef struct {
	Cluster string    `json:"cluster"`
	Machine string    `json:"machine"`
	Armed   time.Time `json:"armed"`
}

// Recorder keeps the boot records in memory and writes the changed ones to the state store when
// flushed, so that a boot storm costs no disk write per request. Safe for concurrent use.
type Recorder struct {
	now func() time.Time

	mu      sync.Mutex
	records map[string]*Record
	dirty   map[string]bool
}

// NewRecorder returns an empty Recorder; now defaults to time.Now.
func NewRecorder(now func() time.Time) *Recorder {
	if now == nil {
		now = time.Now
	}
	return &Recorder{now: now, records: map[string]*Record{}, dirty: map[string]bool{}}
}

// Load adds the records kept in the store (from earlier runs).
func (r *Recorder) Load(st state.Reader) error {
	keys, err := st.List(BucketRecords)
	if err != nil {
		return fmt.Errorf("pxe: boot records: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		var rec Record
		if err := st.Get(BucketRecords, k, &rec); err != nil {
			return fmt.Errorf("pxe: boot record %s: %w", k, err)
		}
		r.records[k] = &rec
	}
	return nil
}

// Observe records that the machine took step.
func (r *Recorder) Observe(m *Machine, step Step, detail string) {
	now := r.now().UTC()
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.records[m.MAC]
	if !ok {
		rec = &Record{MAC: m.MAC}
		r.records[m.MAC] = rec
	}
	rec.Name = m.Name
	if rec.Steps == nil {
		rec.Steps = map[Step]StepRecord{}
	}
	s := rec.Steps[step]
	if s.Count == 0 {
		s.First = now
	}
	s.Last = now
	s.Count++
	s.Detail = detail
	rec.Steps[step] = s
	if step == StepDHCP {
		if ip, _, _ := strings.Cut(detail, " "); net.ParseIP(ip) != nil {
			rec.IP = ip
		}
	}
	r.dirty[m.MAC] = true
}

// Issued records that the machine was given a script with the ticket ref.
func (r *Recorder) Issued(m *Machine, ref TicketRef) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.records[m.MAC]
	if !ok {
		rec = &Record{MAC: m.MAC}
		r.records[m.MAC] = rec
	}
	rec.Name, rec.Ticket = m.Name, &ref
	r.dirty[m.MAC] = true
}

// Ticket returns the ticket of the last script the machine with mac was given.
func (r *Recorder) Ticket(mac string) (TicketRef, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.records[mac]
	if !ok || rec.Ticket == nil {
		return TicketRef{}, false
	}
	return *rec.Ticket, true
}

// Get returns a copy of the machine's record.
func (r *Recorder) Get(mac string) (Record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.records[mac]
	if !ok {
		return Record{}, false
	}
	return rec.clone(), true
}

// Snapshot returns copies of every record, sorted by MAC.
func (r *Recorder) Snapshot() []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Record, 0, len(r.records))
	for _, rec := range r.records {
		out = append(out, rec.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MAC < out[j].MAC })
	return out
}

// Dirty reports whether there are records to flush.
func (r *Recorder) Dirty() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.dirty) > 0
}

// Flush writes the records changed since the last flush to the store. Records that could not be
// written stay dirty.
func (r *Recorder) Flush(st state.Putter) error {
	r.mu.Lock()
	pending := make([]Record, 0, len(r.dirty))
	for mac := range r.dirty {
		pending = append(pending, r.records[mac].clone())
	}
	r.dirty = map[string]bool{}
	r.mu.Unlock()
	var errs []error
	for _, rec := range pending {
		if err := st.Put(BucketRecords, rec.MAC, rec); err != nil {
			errs = append(errs, fmt.Errorf("pxe: boot record %s: %w", rec.MAC, err))
			r.mu.Lock()
			r.dirty[rec.MAC] = true
			r.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

func (rec *Record) clone() Record {
	c := *rec
	c.Steps = make(map[Step]StepRecord, len(rec.Steps))
	for k, v := range rec.Steps {
		c.Steps[k] = v
	}
	if rec.Ticket != nil {
		t := *rec.Ticket
		c.Ticket = &t
	}
	return c
}

// SaveInventory stores the inventory in the state store, replacing the one there.
func SaveInventory(st state.Putter, inv *Inventory) error {
	if err := st.Put(BucketInventory, InventoryKey, inv); err != nil {
		return fmt.Errorf("pxe: save inventory: %w", err)
	}
	return nil
}

// LoadInventory returns the inventory in the state store; state.ErrNotFound if none was loaded.
func LoadInventory(st state.Getter) (*Inventory, error) {
	var inv Inventory
	if err := st.Get(BucketInventory, InventoryKey, &inv); err != nil {
		return nil, fmt.Errorf("pxe: inventory: %w", err)
	}
	return &inv, nil
}

// LoadRecords returns every boot record in the store, sorted by MAC.
func LoadRecords(st state.Reader) ([]Record, error) {
	r := NewRecorder(nil)
	if err := r.Load(st); err != nil {
		return nil, err
	}
	return r.Snapshot(), nil
}
