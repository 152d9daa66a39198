package podnet

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestWriteConflist(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "net.d") // made if missing
	for i, tc := range []struct {
		data  string
		wrote bool
	}{
		{data: "one\n", wrote: true},
		{data: "one\n", wrote: false}, // unchanged: not rewritten, so containerd sees no event
		{data: "two\n", wrote: true},
	} {
		wrote, err := WriteConflist(dir, []byte(tc.data))
		if err != nil {
			t.Fatal(err)
		}
		if wrote != tc.wrote {
			t.Errorf("write %d: wrote %v, want %v", i, wrote, tc.wrote)
		}
		got, err := os.ReadFile(filepath.Join(dir, ConflistFile))
		if err != nil || string(got) != tc.data {
			t.Errorf("write %d: file holds %q (%v), want %q", i, got, err, tc.data)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, ConflistFile))
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v (%v), want 0644", fi.Mode().Perm(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestEarlierConfigs(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"05-other.conf", "10-bridge.json", "10-kiln.conflist", "99-loopback.conf", "00-notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := EarlierConfigs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"05-other.conf", "10-bridge.json"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
