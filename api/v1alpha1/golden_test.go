package v1alpha1

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/kiln-dev/kiln/api/strictyaml"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden and the fixture seeds in testdata/fuzz/FuzzDecode")

// fixtures returns the paths of the spec fixtures, testdata/*.yaml.
func fixtures(tb testing.TB) []string {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no fixtures in testdata: %v", err)
	}
	return paths
}

// render is what a fixture's golden file holds: the error message of an invalid spec, or the warnings
// (as comments) and the defaulted spec, marshaled, of a valid one.
func render(t *testing.T, data []byte, name string) string {
	t.Helper()
	c, warnings, err := DecodeWithWarnings(data, name)
	if err != nil {
		var e *strictyaml.Error
		if !errors.As(err, &e) {
			t.Fatalf("error is %T, want *Error: %v", err, err)
		}
		return "error:\n" + err.Error() + "\n"
	}
	var b strings.Builder
	for _, w := range warnings {
		fmt.Fprintf(&b, "# %s\n", w.Format(name))
	}
	out, err := Marshal(c)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	b.Write(out)
	return b.String()
}

func TestGolden(t *testing.T) {
	for _, path := range fixtures(t) {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got := render(t, data, filepath.Base(path))
			golden := strings.TrimSuffix(path, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("%s differs from %s (-want +got), run go test -update if the change is right:\n%s", path, golden, diff)
			}
			if valid := strings.HasPrefix(name, "valid-"); valid != !strings.HasPrefix(got, "error:") {
				t.Errorf("%s: a fixture named valid-* must decode and any other must not", path)
			}
		})
	}
}

// TestFuzzCorpus keeps a seed in testdata/fuzz/FuzzDecode for every fixture, so that the committed
// corpus holds every valid and invalid spec.
func TestFuzzCorpus(t *testing.T) {
	for _, path := range fixtures(t) {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
			seed := filepath.Join("testdata", "fuzz", "FuzzDecode", "fixture-"+name)
			if *update {
				if err := os.MkdirAll(filepath.Dir(seed), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(seed, []byte(want), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			got, err := os.ReadFile(seed)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(want, string(got)); diff != "" {
				t.Errorf("%s is not the seed of %s (-want +got), run go test -update:\n%s", seed, path, diff)
			}
		})
	}
}
