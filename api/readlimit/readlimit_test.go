package readlimit

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	exact := filepath.Join(dir, "exact")
	big := filepath.Join(dir, "big")
	for path, n := range map[string]int{small: 10, exact: 1024, big: 1025} {
		if err := os.WriteFile(path, []byte(strings.Repeat("x", n)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		path    string
		wantLen int
		wantErr string
	}{
		{name: "under the limit", path: small, wantLen: 10},
		{name: "at the limit", path: exact, wantLen: 1024},
		{name: "over the limit", path: big, wantErr: big + ": larger than the limit of 1 KiB"},
		{name: "missing", path: filepath.Join(dir, "none"), wantErr: "no such file or directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, err := ReadFile(tc.path, 1024)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(data) != tc.wantLen {
				t.Fatalf("got %d bytes, %v; want %d bytes", len(data), err, tc.wantLen)
			}
		})
	}
}

// TestReadFileDevZero reads the endless /dev/zero under a memory limit well below what reading it
// whole would take: the read ends with ErrTooLarge, quickly, and the heap stays small.
func TestReadFileDevZero(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(64 << 20))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, err := ReadFile("/dev/zero", Inventory)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if want := "/dev/zero: larger than the limit of 2 MiB"; err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
	runtime.ReadMemStats(&after)
	// io.ReadAll grows its buffer by doubling: the total allocated stays within a few times the limit.
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4*Inventory {
		t.Errorf("allocated %d bytes reading /dev/zero with a limit of %d", grew, Inventory)
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{Spec: "1 MiB", Inventory: "2 MiB", Config: "16 MiB", Secret: "4 KiB", 100: "100 bytes", 1536: "1536 bytes"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}
