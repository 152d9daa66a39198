package v1alpha1

import (
	"errors"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/kiln-dev/kiln/api/strictyaml"
)

// FuzzDecode checks that Decode never panics, that it fails only with an *Error that has findings, and
// that a spec it accepts survives Marshal and Decode unchanged.
func FuzzDecode(f *testing.F) {
	for _, path := range fixtures(f) {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Decode(data, "fuzz.yaml")
		if err != nil {
			var e *strictyaml.Error
			if !errors.As(err, &e) || len(e.Findings) == 0 || !strictyaml.HasErrors(e.Findings) {
				t.Fatalf("Decode error is not an *Error with error findings: %#v", err)
			}
			if c != nil {
				t.Fatalf("Decode returned a cluster and an error")
			}
			_ = err.Error()
			return
		}
		out, err := Marshal(c)
		if err != nil {
			t.Fatalf("Marshal of a decoded spec: %v", err)
		}
		again, err := Decode(out, "marshaled.yaml")
		if err != nil {
			t.Fatalf("Decode of the marshaled spec: %v\n%s", err, out)
		}
		if diff := cmp.Diff(c, again, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("Marshal and Decode changed the spec (-decoded +again):\n%s\n%s", diff, out)
		}
	})
}
