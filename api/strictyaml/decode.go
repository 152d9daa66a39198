// Package strictyaml decodes versioned YAML documents strictly, with every finding located: it reads a
// document into Go types by their json tag names, reports unknown fields (with a suggestion when a
// known field is close), duplicate keys, values of the wrong type, more than one document and YAML
// syntax errors all at once, each with its YAML path and line:column, and places the findings of later
// validation at the values they are about. It also writes such documents back (Marshal).
//
// It knows no document version: a version package (such as api/v1alpha1) holds the types, their
// defaults and validation, and the glue that checks apiVersion and kind.
package strictyaml

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// MaxValues bounds the work of decoding one document: aliases can make a short document expand into
// very many values. A real spec has a few hundred.
const MaxValues = 100_000

// maxMergeDepth bounds merge keys ("<<") that merge mappings that merge mappings.
const maxMergeDepth = 16

// Options say what kind of document Decode reads.
type Options struct {
	// Kind is what the document holds, for messages: "empty document: want a Cluster spec".
	Kind string
	// Noun is what a file holds exactly one of, for messages: "a spec file holds exactly one cluster".
	// Defaults to Kind in lower case.
	Noun string
	// IntOrString lists, by struct type, the json names of the string fields that also take an
	// integer, like Kubernetes' IntOrString: a count or a percentage.
	IntOrString map[reflect.Type][]string
}

// Decode reads the only YAML document in data into v, a non-nil pointer to a struct, strictly: the
// keys are the json tag names of the fields, and every value that cannot be decoded is reported and
// left zero. The root of the document must be a mapping; null values count as absent.
//
// If there is nothing to decode (YAML syntax, an empty file, a root that is not a mapping, a document
// that expands to more than MaxValues values), Decode returns a nil Document and the findings that say
// why. Otherwise it returns the Document, which locates later findings, and the findings of decoding,
// in the order they were found: see SortFindings and Dedupe.
func Decode(data []byte, v any, opts Options) (*Document, []Finding) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("strictyaml: Decode needs a non-nil pointer to a struct, got %T", v))
	}
	if opts.Noun == "" {
		opts.Noun = strings.ToLower(opts.Kind)
	}
	root, findings := parseDocument(data, opts)
	if root == nil {
		return nil, findings
	}
	if r := resolve(root); r == nil || r.Kind != yaml.MappingNode {
		return nil, append(findings, Finding{
			Line:     root.Line,
			Column:   root.Column,
			Severity: SeverityError,
			Message:  "expected a mapping (a " + opts.Kind + " spec), got " + describe(root),
		})
	}
	d := &Document{
		opts:   opts,
		values: map[string]position{},
		keys:   map[string]position{},
		budget: MaxValues,
	}
	d.decode(root, rv.Elem(), "")
	findings = append(findings, d.findings...)
	d.findings = nil
	if d.budget < 0 {
		SortFindings(findings)
		return nil, findings
	}
	return d, findings
}

// Defaulted returns a warning for every field that the document gives its zero value (0, "", 0s) and
// that now holds another: "0 is replaced by the default, 1". Call it after setting the defaults.
func (d *Document) Defaulted() []Finding {
	var fs []Finding
	for _, z := range d.zeros {
		if d.suppressed(z.path) || z.v.IsZero() {
			continue
		}
		fs = append(fs, d.finding(Issue{
			Path:     z.path,
			Severity: SeverityWarning,
			Message:  fmt.Sprintf("%s is replaced by the default, %s", z.written, formatDefault(z.v)),
		}))
	}
	return fs
}

// Locate gives is the position of its path in the document, or of the nearest enclosing value that
// the document has. It reports false when the issue follows from a problem already reported (a value
// that did not decode, a misspelt field): the user is told once.
func (d *Document) Locate(is Issue) (Finding, bool) {
	if d.suppressedIssue(is) {
		return Finding{}, false
	}
	return d.finding(is), true
}

// parseDocument parses data into YAML nodes and returns the root node of its only document, or nil and
// the findings that say why there is none.
func parseDocument(data []byte, opts Options) (*yaml.Node, []Finding) {
	var (
		root     *yaml.Node
		findings []Finding
		docs     int
	)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := decodeNode(dec, &doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, append(findings, syntaxFinding(data, err))
		}
		if isEmptyDocument(&doc) {
			continue
		}
		docs++
		switch docs {
		case 1:
			root = doc.Content[0]
		case 2:
			findings = append(findings, Finding{
				Line:     doc.Line,
				Column:   doc.Column,
				Severity: SeverityError,
				Message:  "a second YAML document: a spec file holds exactly one " + opts.Noun,
			})
		}
	}
	if docs == 0 {
		findings = append(findings, Finding{
			Severity: SeverityError,
			Message:  "empty document: want a " + opts.Kind + " spec",
		})
	}
	return root, findings
}

// decodeNode reads the next document; a panic in the YAML parser becomes an error.
func decodeNode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: parser failure: %v", r)
		}
	}()
	return dec.Decode(n)
}

// isEmptyDocument reports whether doc holds nothing (a stray "---" or only comments).
func isEmptyDocument(doc *yaml.Node) bool {
	if len(doc.Content) == 0 {
		return true
	}
	n := doc.Content[0]
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null" && n.Value == "" && n.Style == 0 && n.Anchor == ""
}

var yamlLineError = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxFinding turns a YAML parser error about data into a finding, with its line when it can be told.
func syntaxFinding(data []byte, err error) Finding {
	line, msg := splitYAMLError(err)
	return Finding{
		Line:     syntaxLine(data, msg, line),
		Severity: SeverityError,
		Message:  "invalid YAML: " + msg,
	}
}

// splitYAMLError splits "yaml: line N: message" into N (0 if absent) and the message.
func splitYAMLError(err error) (int, string) {
	msg := err.Error()
	if m := yamlLineError.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return line, m[2]
	}
	return 0, strings.TrimPrefix(msg, "yaml: ")
}

// maxSyntaxScan bounds the bytes that syntaxLine parses again.
const maxSyntaxScan = 16 << 20

// syntaxLine finds the line of a syntax error: the YAML library gives the line where the enclosing
// block starts (and for some errors none), so syntaxLine parses ever longer prefixes of data, from that
// line on, and returns the first line at which a prefix fails with the same message. If none does
// within its budget, it returns the library's line.
func syntaxLine(data []byte, msg string, reported int) int {
	var ends []int // ends[i] is the offset after line i+1
	for i, b := range data {
		if b == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(data) {
		ends = append(ends, len(data))
	}
	scanned := 0
	for k := max(reported, 1); k <= len(ends); k++ {
		prefix := data[:ends[k-1]]
		if scanned += len(prefix); scanned > maxSyntaxScan {
			break
		}
		if err := parseAll(prefix); err != nil {
			if _, m := splitYAMLError(err); m == msg {
				return k
			}
		}
	}
	return reported
}

// parseAll parses every document in data and returns the first error.
func parseAll(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		if err := decodeNode(dec, &doc); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// position is where a node starts in the file.
type position struct{ line, column int }

func positionOf(n *yaml.Node) position { return position{line: n.Line, column: n.Column} }

// Document is a decoded document: where each value is, and which values are wrong for a reason already
// reported. Decode fills it as it walks the YAML nodes against the Go types, never stopping at the first
// problem: a value that cannot be decoded is reported and left zero.
type Document struct {
	opts     Options
	findings []Finding
	// values holds the position of the value at each decoded path, keys the position of its key.
	values map[string]position
	keys   map[string]position
	// failed holds the paths whose value is wrong or missing for a reason already reported; validation
	// findings within them are dropped as consequences.
	failed map[string]bool
	// zeros are fields written with their zero value, which SetDefaults may replace.
	zeros []explicitZero
	// budget counts down the values left to decode; below zero the document is too large.
	budget int
}

// explicitZero is a field written with the zero value of its type.
type explicitZero struct {
	path    string
	written string
	v       reflect.Value
}

// finding gives is the position of its path, or of the nearest enclosing value that the file has.
func (d *Document) finding(is Issue) Finding {
	if is.Alt != nil {
		_, here := d.values[is.Path]
		_, there := d.values[is.Alt.Path]
		if !here && there {
			is = *is.Alt
		}
	}
	f := is.Finding()
	if is.AtKey {
		if p, ok := d.keys[is.Path]; ok {
			f.Line, f.Column = p.line, p.column
			return f
		}
	}
	for p := is.Path; ; p = parentPath(p) {
		if pos, ok := d.values[p]; ok {
			f.Line, f.Column = pos.line, pos.column
			return f
		}
		if p == "" {
			return f
		}
	}
}

// suppressed reports whether path p is within a value whose problem has already been reported.
func (d *Document) suppressed(p string) bool {
	for {
		if d.failed[p] {
			return true
		}
		if p == "" {
			return false
		}
		p = parentPath(p)
	}
}

// markFailed records that the value at path p has a problem already reported.
func (d *Document) markFailed(p string) {
	if d.failed == nil {
		d.failed = map[string]bool{}
	}
	d.failed[p] = true
}

// suppressedIssue reports whether a validation finding follows from a problem already reported.
func (d *Document) suppressedIssue(is Issue) bool {
	if d.suppressed(is.Path) || (is.Alt != nil && d.suppressed(is.Alt.Path)) {
		return true
	}
	for _, p := range is.Deps {
		if d.suppressed(p) {
			return true
		}
	}
	return false
}

// errorAt records an error finding at node n.
func (d *Document) errorAt(n *yaml.Node, path, format string, args ...any) {
	d.findings = append(d.findings, Finding{
		Path:     path,
		Line:     n.Line,
		Column:   n.Column,
		Severity: SeverityError,
		Message:  fmt.Sprintf(format, args...),
	})
}

// fail records an error at node n and marks path as failed.
func (d *Document) fail(n *yaml.Node, path, format string, args ...any) {
	d.errorAt(n, path, format, args...)
	d.markFailed(path)
}

// spend counts one more value decoded at node n and reports whether the budget allows it. The first
// time it does not, it records an error.
func (d *Document) spend(n *yaml.Node, path string) bool {
	if d.budget--; d.budget < 0 {
		if d.budget == -1 {
			d.errorAt(n, path, "document expands to more than %d values (too many aliases?)", MaxValues)
		}
		return false
	}
	return true
}

// resolve follows aliases to the node they name; nil if there is none.
func resolve(n *yaml.Node) *yaml.Node {
	for range 8 {
		if n == nil || n.Kind != yaml.AliasNode {
			return n
		}
		n = n.Alias
	}
	return nil
}

// decode sets v, which must be addressable, from node n at path.
func (d *Document) decode(n *yaml.Node, v reflect.Value, path string) {
	if !d.spend(n, path) {
		return
	}
	if r := resolve(n); r != nil {
		n = r
	} else {
		d.fail(n, path, "alias to nothing")
		return
	}
	if _, ok := d.values[path]; !ok {
		d.values[path] = positionOf(n)
	}
	if tag := n.ShortTag(); !strings.HasPrefix(tag, "!!") {
		d.fail(n, path, "unsupported YAML tag %q", n.Tag)
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // null is the zero value, as if the key were absent
	}
	d.decodeValue(n, v, path)
}

// decodeValue is decode for a resolved, non-null node.
func (d *Document) decodeValue(n *yaml.Node, v reflect.Value, path string) {
	if u, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "expected a string, got %s", describe(n))
			return
		}
		if err := u.UnmarshalText([]byte(n.Value)); err != nil {
			d.fail(n, path, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		d.decodeValue(n, p.Elem(), path)
		v.Set(p)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "expected a sequence, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), IndexPath(path, i))
		}
		v.Set(s)
	case reflect.String:
		d.decodeString(n, v, path, false)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			d.fail(n, path, "expected an integer, got %s", describe(n))
			return
		}
		var i int64
		if err := decodeScalar(n, &i); err != nil || v.OverflowInt(i) {
			d.fail(n, path, "integer %s is out of range", truncate(n.Value))
			return
		}
		v.SetInt(i)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			d.fail(n, path, "expected true or false, got %s", describe(n))
			return
		}
		var b bool
		if err := decodeScalar(n, &b); err != nil {
			d.fail(n, path, "expected true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	default:
		d.fail(n, path, "cannot decode into %s", v.Type())
	}
}

// decodeString sets the string v from a string scalar, or from an integer too if intOK.
func (d *Document) decodeString(n *yaml.Node, v reflect.Value, path string, intOK bool) {
	tag := n.ShortTag()
	if n.Kind != yaml.ScalarNode || (tag != "!!str" && !(intOK && tag == "!!int")) {
		msg := fmt.Sprintf("expected a string, got %s", describe(n))
		if n.Kind == yaml.ScalarNode {
			msg += fmt.Sprintf(" (quote it: %q)", truncate(n.Value))
		}
		d.fail(n, path, "%s", msg)
		return
	}
	if !utf8.ValidString(n.Value) {
		d.fail(n, path, "string is not valid UTF-8")
		return
	}
	v.SetString(n.Value)
}

// decodeScalar decodes a scalar node with the YAML library, turning a panic into an error.
func decodeScalar(n *yaml.Node, out any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return n.Decode(out)
}

func (d *Document) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected a mapping, got %s", describe(n))
		return
	}
	fields := fieldsOf(v.Type())
	entries := d.entries(n, path, 0)
	present := make(map[string]bool, len(entries))
	for _, e := range entries {
		present[e.name] = true
	}
	for _, e := range entries {
		f, ok := fields.byName[e.name]
		if !ok {
			fp := KeyPath(path, e.name)
			if s := suggest(e.name, fields.names); s != "" {
				d.errorAt(e.key, fp, "unknown field %q, did you mean %q?", e.name, s)
				if !present[s] {
					// The misspelt field is what the user meant: do not also report it missing.
					d.markFailed(FieldPath(path, s))
				}
			} else {
				d.errorAt(e.key, fp, "unknown field %q (known: %s)", e.name, strings.Join(fields.names, ", "))
			}
			continue
		}
		fp := FieldPath(path, e.name)
		if _, ok := d.keys[fp]; !ok {
			d.keys[fp] = positionOf(e.key)
		}
		fv := v.Field(f.index)
		val := resolve(e.value)
		if fv.Kind() == reflect.String && slices.Contains(d.opts.IntOrString[v.Type()], e.name) && val != nil && val.Kind == yaml.ScalarNode && val.ShortTag() == "!!int" {
			if _, ok := d.values[fp]; !ok {
				d.values[fp] = positionOf(val)
			}
			d.decodeString(val, fv, fp, true)
			continue
		}
		d.decode(e.value, fv, fp)
		if f.omitEmpty && fv.IsZero() && val != nil && val.Kind == yaml.ScalarNode && val.ShortTag() != "!!null" {
			written := val.Value
			if fv.Kind() == reflect.String {
				written = strconv.Quote(val.Value)
			}
			d.zeros = append(d.zeros, explicitZero{path: fp, written: written, v: fv})
		}
	}
}

func (d *Document) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected a mapping, got %s", describe(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	kt, et := v.Type().Key(), v.Type().Elem()
	for _, e := range d.entries(n, path, 0) {
		kp := KeyPath(path, e.name)
		if _, ok := d.keys[kp]; !ok {
			d.keys[kp] = positionOf(e.key)
		}
		ev := reflect.New(et).Elem()
		d.decode(e.value, ev, kp)
		v.SetMapIndex(reflect.ValueOf(e.name).Convert(kt), ev)
	}
}

// entry is one key and value of a mapping.
type entry struct {
	key, value *yaml.Node
	name       string
}

// entries lists the entries of mapping n in order, reporting keys that are not scalars and duplicate
// keys (the first one counts). Entries merged in with "<<" come after the mapping's own and lose to them.
func (d *Document) entries(n *yaml.Node, path string, depth int) []entry {
	var (
		out    []entry
		merged []entry
		seen   = map[string]*yaml.Node{}
	)
	for i := 0; i+1 < len(n.Content); i += 2 {
		if !d.spend(n.Content[i], path) {
			break
		}
		k, val := resolve(n.Content[i]), n.Content[i+1]
		if k == nil {
			d.fail(n.Content[i], path, "alias to nothing")
			continue
		}
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, d.merge(val, path, depth)...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errorAt(k, path, "expected a string key, got %s", describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errorAt(k, KeyPath(path, k.Value), "duplicate key %q, first at line %d", k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		out = append(out, entry{key: k, value: val, name: k.Value})
	}
	for _, e := range merged {
		if _, ok := seen[e.name]; !ok {
			seen[e.name] = e.key
			out = append(out, e)
		}
	}
	return out
}

// merge returns the entries that the value of a merge key ("<<: *base" or "<<: [*a, *b]") brings in.
func (d *Document) merge(val *yaml.Node, path string, depth int) []entry {
	if !d.spend(val, path) {
		return nil
	}
	if depth >= maxMergeDepth {
		d.fail(val, path, "merge keys nested more than %d deep", maxMergeDepth)
		return nil
	}
	v := resolve(val)
	if v == nil {
		d.fail(val, path, "alias to nothing")
		return nil
	}
	switch v.Kind {
	case yaml.MappingNode:
		return d.entries(v, path, depth+1)
	case yaml.SequenceNode:
		var out []entry
		for _, c := range v.Content {
			m := resolve(c)
			if m == nil || m.Kind != yaml.MappingNode {
				d.fail(c, path, "merge key needs a mapping or a sequence of mappings")
				continue
			}
			out = append(out, d.entries(m, path, depth+1)...)
		}
		return out
	}
	d.fail(val, path, "merge key needs a mapping or a sequence of mappings, got %s", describe(v))
	return nil
}

// structFields describes the decodable fields of a struct type.
type structFields struct {
	byName map[string]fieldInfo
	names  []string // in declaration order
}

type fieldInfo struct {
	index     int
	omitEmpty bool
}

var fieldCache sync.Map // reflect.Type -> *structFields

// fieldsOf returns the fields of struct type t by json tag name.
func fieldsOf(t reflect.Type) *structFields {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.(*structFields)
	}
	fs := &structFields{byName: map[string]fieldInfo{}}
	for i := range t.NumField() {
		sf := t.Field(i)
		name, opts, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if !sf.IsExported() || name == "" || name == "-" {
			continue
		}
		fs.byName[name] = fieldInfo{
			index:     i,
			omitEmpty: strings.Contains(","+opts+",", ",omitempty,"),
		}
		fs.names = append(fs.names, name)
	}
	fieldCache.Store(t, fs)
	return fs
}

// describe says what a node is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a sequence"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch tag := n.ShortTag(); tag {
	case "!!str":
		return "string " + strconv.Quote(truncate(n.Value))
	case "!!int":
		return "integer " + truncate(n.Value)
	case "!!float":
		return "float " + truncate(n.Value)
	case "!!bool":
		return "bool " + truncate(n.Value)
	case "!!null":
		return "null"
	default:
		return strings.TrimPrefix(tag, "!!") + " " + strconv.Quote(truncate(n.Value))
	}
}

// Quote quotes a value from a document for a message, shortened if it is long.
func Quote(s string) string { return strconv.Quote(truncate(s)) }

// truncate shortens s for a message.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// suggest returns the known name closest to name, if it is within edit distance 2 (ignoring case).
func suggest(name string, known []string) string {
	best, bestDist := "", 3
	n := utf8.RuneCountInString(name)
	for _, k := range known {
		if diff := n - len(k); diff > 2 || diff < -2 {
			continue // too long or too short to be within distance 2 (known names are ASCII)
		}
		if dist := editDistance(strings.ToLower(name), strings.ToLower(k)); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// formatDefault writes a default value the way a user would: a string quoted, a value that marshals
// itself (yaml.Marshaler, such as a duration) as it marshals.
func formatDefault(v reflect.Value) string {
	if m, ok := v.Interface().(yaml.Marshaler); ok {
		if x, err := m.MarshalYAML(); err == nil {
			return fmt.Sprint(x)
		}
	}
	if s, ok := v.Interface().(string); ok {
		return strconv.Quote(s)
	}
	if s, ok := v.Interface().(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprint(v.Interface())
}
