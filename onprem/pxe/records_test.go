package pxe

import (
	"bytes"
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

func TestURLKey(t *testing.T) {
	fill := func(b byte) func([]byte) error {
		return func(k []byte) error { copy(k, bytes.Repeat([]byte{b}, len(k))); return nil }
	}
	st := statetest.NewEmpty()
	key, err := URLKey(st, fill(1))
	if err != nil || !bytes.Equal(key, bytes.Repeat([]byte{1}, 32)) {
		t.Fatalf("first URLKey = %x, %v; want 32 new bytes", key, err)
	}
	// Made once, then read.
	if again, err := URLKey(st, fill(2)); err != nil || !bytes.Equal(again, key) {
		t.Errorf("second URLKey = %x, %v; want the first", again, err)
	}
	kept := bytes.Repeat([]byte{9}, 32)
	fixed := statetest.NewFixed(t, statetest.Values{BucketInventory: {urlKeyName: kept}})
	if got, err := URLKey(fixed, func([]byte) error { t.Error("a key was made although one is stored"); return nil }); err != nil || !bytes.Equal(got, kept) {
		t.Errorf("URLKey of a store that has one = %x, %v; want the stored key", got, err)
	}
	errRandom := errors.New("entropy exhausted")
	if _, err := URLKey(statetest.NewEmpty(), func([]byte) error { return errRandom }); !errors.Is(err, errRandom) ||
		!strings.HasPrefix(err.Error(), "pxe: new url key: ") {
		t.Errorf("URLKey with a failing random source = %v", err)
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
		{name: "url key", call: func() error { _, err := URLKey(broken, func([]byte) error { return nil }); return err },
			want: "pxe: url key: input/output error"},
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
