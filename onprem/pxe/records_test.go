package pxe

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-dev/kiln/state"
	"github.com/kiln-dev/kiln/state/statetest"
)

func TestRecorderFlushAndLoad(t *testing.T) {
	inv := testInventory(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rec := NewRecorder(func() time.Time { return now })
	st := statetest.NewEmpty()

	m := &inv.Machines[0]
	rec.Observe(m, StepDHCP, "10.0.0.100 ipxe")
	rec.Observe(m, StepScript, "debian")
	if !rec.Dirty() {
		t.Fatal("not dirty after Observe")
	}
	if err := rec.Flush(st); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if rec.Dirty() {
		t.Error("dirty after a Flush that succeeded")
	}
	want := []Record{{MAC: m.MAC, Name: m.Name, IP: "10.0.0.100", Steps: map[Step]StepRecord{
		StepDHCP:   {First: now, Last: now, Count: 1, Detail: "10.0.0.100 ipxe"},
		StepScript: {First: now, Last: now, Count: 1, Detail: "debian"},
	}}}
	got, err := LoadRecords(st)
	if err != nil {
		t.Fatalf("LoadRecords: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records in the store (-want +got):\n%s", diff)
	}

	// Only what changed is written again.
	if err := st.Delete(BucketRecords, m.MAC); err != nil {
		t.Fatal(err)
	}
	if err := rec.Flush(st); err != nil {
		t.Fatal(err)
	}
	if keys, _ := st.List(BucketRecords); len(keys) != 0 {
		t.Errorf("a Flush with nothing changed wrote %v", keys)
	}
}

func TestFlushKeepsFailedRecordsDirty(t *testing.T) {
	inv := testInventory(t)
	rec := NewRecorder(nil)
	rec.Observe(&inv.Machines[0], StepScript, "debian")
	errDisk := errors.New("no space left on device")
	err := rec.Flush(statetest.Broken{Err: errDisk})
	if want := "pxe: boot record " + inv.Machines[0].MAC + ": no space left on device"; !errors.Is(err, errDisk) || err.Error() != want {
		t.Fatalf("Flush to a broken store = %v, want %q", err, want)
	}
	if !rec.Dirty() {
		t.Fatal("a record that could not be written is no longer dirty")
	}
	st := statetest.NewEmpty()
	if err := rec.Flush(st); err != nil || rec.Dirty() {
		t.Fatalf("Flush once the store works: %v, dirty %v", err, rec.Dirty())
	}
	if keys, _ := st.List(BucketRecords); len(keys) != 1 {
		t.Errorf("records written on retry: %v", keys)
	}
}

func TestInventoryInStore(t *testing.T) {
	inv := testInventory(t)
	st := statetest.NewEmpty()
	if _, err := LoadInventory(st); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("LoadInventory of an empty store = %v, want state.ErrNotFound", err)
	}
	if err := SaveInventory(st, inv); err != nil {
		t.Fatal(err)
	}
	got, err := LoadInventory(st)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(inv.Machines, got.Machines); diff != "" {
		t.Errorf("machines after a round trip through the store (-saved +loaded):\n%s", diff)
	}
}

func TestArms(t *testing.T) {
	st := statetest.NewEmpty()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cli := Arm{MAC: "52:54:00:00:00:01", By: ArmedByCLI, At: at, Expires: at.Add(time.Hour)}
	metal := Arm{MAC: "52:54:00:00:00:02", Cluster: "demo", Machine: "demo-workers-abc", By: ArmedByMetal, At: at, Config: []byte(`{}`)}
	for _, a := range []Arm{cli, metal} {
		if err := ArmMachine(st, a); err != nil {
			t.Fatal(err)
		}
	}
	arms, err := LoadArms(st)
	if diff := cmp.Diff(map[string]Arm{cli.MAC: cli, metal.MAC: metal}, arms); err != nil || diff != "" {
		t.Fatalf("LoadArms: %v (-want +got):\n%s", err, diff)
	}
	if err := Disarm(st, cli.MAC); err != nil {
		t.Fatal(err)
	}
	if err := Disarm(st, cli.MAC); err != nil {
		t.Errorf("disarming a machine that is not armed: %v", err)
	}
	if _, ok, err := GetArm(st, cli.MAC); ok || err != nil {
		t.Errorf("GetArm after Disarm = %v, %v", ok, err)
	}
	if got, ok, err := GetArm(st, metal.MAC); !ok || err != nil || got.Machine != metal.Machine {
		t.Errorf("GetArm = %+v, %v, %v", got, ok, err)
	}

	tests := []struct {
		name string
		arm  Arm
		now  time.Time
		want bool
	}{
		{name: "no expiry", arm: metal, now: at.Add(100 * 24 * time.Hour), want: true},
		{name: "before expiry", arm: cli, now: at.Add(59 * time.Minute), want: true},
		{name: "at expiry", arm: cli, now: at.Add(time.Hour), want: false},
		{name: "after expiry", arm: cli, now: at.Add(2 * time.Hour), want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.arm.Active(tc.now); got != tc.want {
				t.Errorf("Active = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRecorderTicket(t *testing.T) {
	inv := testInventory(t)
	m := &inv.Machines[0]
	rec := NewRecorder(nil)
	if _, ok := rec.Ticket(m.MAC); ok {
		t.Fatal("a ticket before any was issued")
	}
	ref := TicketRef{Cluster: "demo", Machine: m.Name, Armed: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	rec.Issued(m, ref)
	st := statetest.NewEmpty()
	if err := rec.Flush(st); err != nil {
		t.Fatal(err)
	}
	again := NewRecorder(nil)
	if err := again.Load(st); err != nil {
		t.Fatal(err)
	}
	if got, ok := again.Ticket(m.MAC); !ok || got != ref {
		t.Errorf("ticket after a round trip through the store = %+v, %v; want %+v", got, ok, ref)
	}
	if r, _ := again.Get(m.MAC); r.Name != m.Name || len(r.Steps) != 0 {
		t.Errorf("record %+v: issuing a ticket is not a boot step", r)
	}
}

// TestRecordsStoreErrors: a state store that fails is reported with what was being read or written.
func TestRecordsStoreErrors(t *testing.T) {
	errDisk := errors.New("input/output error")
	broken := statetest.Broken{Err: errDisk}
	inv := testInventory(t)
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{name: "load records", call: func() error { return NewRecorder(nil).Load(broken) }, want: "pxe: boot records: input/output error"},
		{name: "list records", call: func() error { _, err := LoadRecords(broken); return err }, want: "pxe: boot records: input/output error"},
		{name: "save inventory", call: func() error { return SaveInventory(broken, inv) }, want: "pxe: save inventory: input/output error"},
		{name: "load inventory", call: func() error { _, err := LoadInventory(broken); return err }, want: "pxe: inventory: input/output error"},
		{name: "arm", call: func() error { return ArmMachine(broken, Arm{MAC: "52:54:00:00:00:01"}) }, want: "pxe: arm 52:54:00:00:00:01: input/output error"},
		{name: "disarm", call: func() error { return Disarm(broken, "52:54:00:00:00:01") }, want: "pxe: disarm 52:54:00:00:00:01: input/output error"},
		{name: "get arm", call: func() error { _, _, err := GetArm(broken, "52:54:00:00:00:01"); return err }, want: "pxe: arm 52:54:00:00:00:01: input/output error"},
		{name: "load arms", call: func() error { _, err := LoadArms(broken); return err }, want: "pxe: arms: input/output error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, errDisk) || err.Error() != tc.want {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}

	// A record that does not decode is named.
	st := statetest.NewFixed(t, statetest.Values{BucketRecords: {"52:54:00:00:00:01": "not a record"}})
	if _, err := LoadRecords(st); err == nil || !strings.HasPrefix(err.Error(), "pxe: boot record 52:54:00:00:00:01: state: decode pxe-records/52:54:00:00:00:01: ") {
		t.Errorf("LoadRecords with a damaged record = %v", err)
	}
}
