package strictyaml

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// widget is a document of a made-up kind that uses every feature of the decoder; api/v1alpha1 tests
// the same machinery through a Cluster.
type widget struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Name       string            `json:"name"`
	Count      int               `json:"count,omitempty"`
	Budget     string            `json:"budget,omitempty"`
	Timeout    seconds           `json:"timeout,omitempty"`
	Enabled    *bool             `json:"enabled,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	Parts      []part            `json:"parts,omitempty"`
	Spare      *part             `json:"spare,omitempty"`
}

type part struct {
	Name string `json:"name"`
	Port int    `json:"port,omitempty"`
}

// seconds is written "30s": it marshals itself (yaml.Marshaler) and reads itself from text.
type seconds int

func (s seconds) MarshalYAML() (any, error) { return strconv.Itoa(int(s)) + "s", nil }

func (s *seconds) UnmarshalText(b []byte) error {
	n, err := strconv.Atoi(strings.TrimSuffix(string(b), "s"))
	if err != nil || !strings.HasSuffix(string(b), "s") {
		return fmt.Errorf("not a number of seconds (want e.g. 30s): %q", b)
	}
	*s = seconds(n)
	return nil
}

var widgetOptions = Options{
	Kind:        "Widget",
	IntOrString: map[reflect.Type][]string{reflect.TypeFor[widget](): {"budget"}},
}

const widgetHead = "apiVersion: example.com/v1\nkind: Widget\nname: w\n"

func TestDecode(t *testing.T) {
	doc := widgetHead +
		"count: 2\n" +
		"budget: 3\n" +
		"timeout: 30s\n" +
		"enabled: false\n" +
		"labels: {example.com/role: edge, tier: \"1\"}\n" +
		"parts:\n" +
		"  - &p {name: a, port: 80}\n" +
		"  - <<: *p\n" +
		"    name: b\n" +
		"spare: *p\n"
	var got widget
	d, findings := Decode([]byte(doc), &got, widgetOptions)
	if d == nil || len(findings) > 0 {
		t.Fatalf("Decode = %v, %v", d, findings)
	}
	enabled := false
	want := widget{
		APIVersion: "example.com/v1",
		Kind:       "Widget",
		Name:       "w",
		Count:      2,
		Budget:     "3",
		Timeout:    30,
		Enabled:    &enabled,
		Labels:     map[string]string{"example.com/role": "edge", "tier": "1"},
		Parts:      []part{{Name: "a", Port: 80}, {Name: "b", Port: 80}},
		Spare:      &part{Name: "a", Port: 80},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Decode (-want +got):\n%s", diff)
	}
}

func TestDecodeFindings(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		doc  string
		want []Finding
	}{
		{
			name: "empty document names the kind",
			opts: widgetOptions,
			doc:  "# nothing\n",
			want: []Finding{errAt("", 0, 0, "empty document: want a Widget spec")},
		},
		{
			name: "root that is not a mapping names the kind",
			opts: widgetOptions,
			doc:  "- a\n",
			want: []Finding{errAt("", 1, 1, "expected a mapping (a Widget spec), got a sequence")},
		},
		{
			name: "a second document, the noun defaults to the kind in lower case",
			opts: widgetOptions,
			doc:  widgetHead + "---\n" + widgetHead,
			want: []Finding{errAt("", 4, 1, "a second YAML document: a spec file holds exactly one widget")},
		},
		{
			name: "a second document, with a noun",
			opts: Options{Kind: "MachineInventory", Noun: "inventory"},
			doc:  widgetHead + "---\n" + widgetHead,
			want: []Finding{errAt("", 4, 1, "a second YAML document: a spec file holds exactly one inventory")},
		},
		{
			name: "syntax error with its line",
			opts: widgetOptions,
			doc:  widgetHead + "parts:\n  - name: a\n bad: [\n",
			want: []Finding{errAt("", 6, 0, "invalid YAML: did not find expected key")},
		},
		{
			name: "every problem at once, in the order found",
			opts: widgetOptions,
			doc:  widgetHead + "cuont: 2\nsize: 3\nparts:\n  - name: a\n    port: eighty\n  - name: b\n    name: c\nlabels:\n  tier: 1\n",
			want: []Finding{
				errAt("cuont", 4, 1, `unknown field "cuont", did you mean "count"?`),
				errAt("size", 5, 1, `unknown field "size" (known: apiVersion, kind, name, count, budget, timeout, enabled, labels, parts, spare)`),
				errAt("parts[0].port", 8, 11, `expected an integer, got string "eighty"`),
				errAt("parts[1].name", 10, 5, `duplicate key "name", first at line 9`),
				errAt("labels.tier", 12, 9, `expected a string, got integer 1 (quote it: "1")`),
			},
		},
		{
			name: "a text value that does not parse",
			opts: widgetOptions,
			doc:  widgetHead + "timeout: soon\n",
			want: []Finding{errAt("timeout", 4, 10, `not a number of seconds (want e.g. 30s): "soon"`)},
		},
		{
			name: "an integer where only a string is declared",
			opts: Options{Kind: "Widget"},
			doc:  widgetHead + "budget: 3\n",
			want: []Finding{errAt("budget", 4, 9, `expected a string, got integer 3 (quote it: "3")`)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var w widget
			_, got := Decode([]byte(tc.doc), &w, tc.opts)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeTooManyValues(t *testing.T) {
	var b strings.Builder
	b.WriteString("anchors:\n  - &l0 {k: v}\n")
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&b, "  - &l%d {<<: [%s]}\n", i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 10), ", "))
	}
	b.WriteString("labels: *l10\n")
	var w widget
	d, findings := Decode([]byte(b.String()), &w, widgetOptions)
	if d != nil {
		t.Errorf("Decode returned a Document for a document too large")
	}
	if !HasErrors(findings) || !strings.Contains(fmt.Sprint(findings), "document expands to more than 100000 values") {
		t.Errorf("findings = %v, want one about the document expanding", findings)
	}
}

func TestDecodeNeedsAPointerToAStruct(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Errorf("Decode into a struct value did not panic")
		}
	}()
	Decode([]byte(widgetHead), widget{}, widgetOptions)
}

func TestDefaulted(t *testing.T) {
	doc := widgetHead + "count: 0\ntimeout: 0s\nbudget: \"\"\nparts:\n  - name: \"\"\n"
	var w widget
	d, findings := Decode([]byte(doc), &w, widgetOptions)
	if d == nil || len(findings) > 0 {
		t.Fatalf("Decode = %v, %v", d, findings)
	}
	// Defaults for count and timeout; budget keeps its zero; name is not optional.
	w.Count, w.Timeout, w.Parts[0].Name = 1, 30, "p"
	want := []Finding{
		warnAt("count", 4, 8, "0 is replaced by the default, 1"),
		warnAt("timeout", 5, 10, "0s is replaced by the default, 30s"),
	}
	if diff := cmp.Diff(want, d.Defaulted(), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Defaulted (-want +got):\n%s", diff)
	}
}

func TestLocate(t *testing.T) {
	doc := widgetHead +
		"labels:\n" +
		"  Bad Key: x\n" +
		"parts:\n" +
		"  - name: a\n" +
		"    port: eighty\n" +
		"  - name: b\n" +
		"spare: {name: s}\n" +
		"cuont: 1\n"
	var w widget
	d, _ := Decode([]byte(doc), &w, widgetOptions)
	if d == nil {
		t.Fatal("Decode returned no Document")
	}
	tests := []struct {
		name   string
		is     Issue
		want   Finding
		wantOK bool
	}{
		{
			name:   "a value",
			is:     Issue{Path: "parts[1].name", Severity: SeverityError, Message: "m"},
			want:   errAt("parts[1].name", 9, 11, "m"),
			wantOK: true,
		},
		{
			name:   "a value that is not in the file points at its mapping",
			is:     Issue{Path: "spare.port", Severity: SeverityWarning, Message: "m"},
			want:   warnAt("spare.port", 10, 8, "m"),
			wantOK: true,
		},
		{
			name:   "a map key",
			is:     Issue{Path: KeyPath("labels", "Bad Key"), Severity: SeverityError, Message: "m", AtKey: true},
			want:   errAt(`labels["Bad Key"]`, 5, 3, "m"),
			wantOK: true,
		},
		{
			name:   "a map value",
			is:     Issue{Path: KeyPath("labels", "Bad Key"), Severity: SeverityError, Message: "m"},
			want:   errAt(`labels["Bad Key"]`, 5, 12, "m"),
			wantOK: true,
		},
		{
			name: "told from the other path when only that one is in the file",
			is: Issue{
				Path: "budget", Severity: SeverityError, Message: "budget m",
				Alt: &Issue{Path: "spare.name", Severity: SeverityError, Message: "spare m"},
			},
			want:   errAt("spare.name", 10, 15, "spare m"),
			wantOK: true,
		},
		{
			name: "within a value that failed to decode",
			is:   Issue{Path: "parts[0].port", Severity: SeverityError, Message: "m"},
		},
		{
			name: "following from a value that failed to decode",
			is:   Issue{Path: "parts[1].port", Severity: SeverityError, Message: "m", Deps: []string{"parts[0].port"}},
		},
		{
			name: "about the field a misspelt one meant",
			is:   Issue{Path: "count", Severity: SeverityError, Message: "m"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := d.Locate(tc.is)
			if ok != tc.wantOK {
				t.Fatalf("Locate ok = %v, want %v (finding %v)", ok, tc.wantOK, got)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Locate (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMarshal(t *testing.T) {
	enabled := true
	w := &widget{
		APIVersion: "example.com/v1",
		Kind:       "Widget",
		Name:       "true",
		Budget:     "40%",
		Timeout:    90,
		Enabled:    &enabled,
		Labels:     map[string]string{"b": "2", "a": "line one\nline two\n"},
		Parts:      []part{{Name: "a"}},
	}
	got, err := Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	want := `apiVersion: example.com/v1
kind: Widget
name: "true"
budget: 40%
timeout: 90s
enabled: true
labels:
  a: |
    line one
    line two
  b: "2"
parts:
  - name: a
`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("Marshal (-want +got):\n%s", diff)
	}
	var again widget
	if _, findings := Decode(got, &again, widgetOptions); len(findings) > 0 {
		t.Fatalf("Decode of the marshaled widget: %v", findings)
	}
	if diff := cmp.Diff(w, &again); diff != "" {
		t.Errorf("Marshal and Decode changed the widget (-before +after):\n%s", diff)
	}
}

func TestMarshalErrors(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want string
	}{
		{name: "nil", v: nil, want: "marshal: nil"},
		{name: "nil pointer", v: (*widget)(nil), want: "marshal: nil *strictyaml.widget"},
		{name: "not a struct", v: map[string]string{}, want: "marshal: map[string]string is not a struct"},
		{name: "a field that cannot be written", v: struct {
			F func() `json:"f"`
		}{F: func() {}}, want: "marshal: f: cannot encode func()"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Marshal(tc.v)
			if err == nil || err.Error() != tc.want {
				t.Errorf("Marshal error = %v, want %s", err, tc.want)
			}
		})
	}
}

func TestErrorsAs(t *testing.T) {
	var err error = &Error{File: "w.yaml", Findings: []Finding{errAt("name", 3, 7, "required")}}
	var e *Error
	if !errors.As(fmt.Errorf("load: %w", err), &e) || e.File != "w.yaml" {
		t.Errorf("errors.As did not find the *Error")
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"kubernetesVersion", "provider", "network", "controlPlane", "nodePools", "ssh", "security", "health"}
	tests := []struct {
		name, in, want string
	}{
		{name: "missing letter", in: "contrlPlane", want: "controlPlane"},
		{name: "swapped letters", in: "netwrok", want: "network"},
		{name: "case", in: "NODEPOOLS", want: "nodePools"},
		{name: "too far", in: "replicas", want: ""},
		{name: "short", in: "sh", want: "ssh"},
		{name: "non-ASCII", in: "héalth", want: "health"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := suggest(tc.in, known); got != tc.want {
				t.Errorf("suggest(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
