package state_test

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/kiln-dev/kiln/state"
	"github.com/kiln-dev/kiln/state/statetest"
)

// TestContract holds the state file to the contract its fakes are held to (statetest.Run), so that
// what a consumer's test sees of a fake is what it would see of the file.
func TestContract(t *testing.T) {
	statetest.Run(t, func(t *testing.T) statetest.Implementation {
		s, err := state.Open(filepath.Join(t.TempDir(), state.FileName), bytes.Repeat([]byte{5}, state.KeySize))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}
