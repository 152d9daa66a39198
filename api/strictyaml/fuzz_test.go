package strictyaml

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzDecode checks that Decode never panics, that it returns no Document only with an error finding,
// and that a document it decodes without errors survives Marshal and Decode unchanged. The Cluster of
// api/v1alpha1 has its own FuzzDecode with a corpus of real specs.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		"",
		"- a\n",
		widgetHead,
		widgetHead + "---\n" + widgetHead,
		widgetHead + "count: 2\nbudget: 3\ntimeout: 30s\nenabled: false\nlabels: {example.com/role: edge}\n",
		widgetHead + "parts:\n  - &p {name: a, port: 80}\n  - <<: *p\n    name: b\nspare: *p\n",
		widgetHead + "cuont: 2\nparts:\n  - name: a\n    port: eighty\nlabels:\n  tier: 1\n",
		widgetHead + "labels:\n  a: |\n    line one\n    line two\n  b: \"2\"\n",
		"anchors:\n  - &l0 {k: v}\n  - &l1 {<<: [*l0, *l0]}\nlabels: *l1\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var w widget
		d, findings := Decode(data, &w, widgetOptions)
		if d == nil {
			if !HasErrors(findings) {
				t.Fatalf("Decode returned no Document and no error: %v", findings)
			}
			return
		}
		if HasErrors(findings) {
			return
		}
		out, err := Marshal(&w)
		if err != nil {
			t.Fatalf("Marshal of a decoded widget: %v", err)
		}
		var again widget
		if _, findings := Decode(out, &again, widgetOptions); len(findings) > 0 {
			t.Fatalf("Decode of the marshaled widget: %v\n%s", findings, out)
		}
		if diff := cmp.Diff(w, again, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("Marshal and Decode changed the widget (-decoded +again):\n%s\n%s", diff, out)
		}
	})
}
