package kubecfg

import (
	"bytes"
	stdjson "encoding/json"
	"fmt"
	"reflect"

	"sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// mustMarshal renders a document that this package builds from constants only; failing to marshal it is
// a programming error.
func mustMarshal(obj any) []byte {
	b, err := yaml.Marshal(obj)
	if err != nil {
		panic(fmt.Sprintf("kubecfg: marshal %T: %v", obj, err))
	}
	return b
}

// marshalSet writes obj, a value of an upstream configuration type, as YAML holding only what differs
// from zero, a value of the same type with nothing set. encoding/json writes struct-typed fields whether
// or not they are omitempty (durations as "0s", logging options, kubeconfig preferences), and a file that
// lists every knob at its zero value says nothing about what kiln chose. A value that kiln sets is kept
// even where it equals a default (a pointer to false is not nil); to write a zero that the type's
// omitempty would drop, wrap the type in a struct whose own field of the same JSON name has no
// omitempty (encoding/json prefers the shallower field). Keys are sorted, as sigs.k8s.io/yaml writes
// them.
func marshalSet(obj, zero any) ([]byte, error) {
	set, err := jsonObject(obj)
	if err != nil {
		return nil, err
	}
	unset, err := jsonObject(zero)
	if err != nil {
		return nil, err
	}
	dropUnset(set, unset)
	return yaml.Marshal(set)
}

// jsonObject is v as encoding/json writes it, read back as a JSON object; numbers stay exact.
func jsonObject(v any) (map[string]any, error) {
	b, err := stdjson.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := stdjson.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// dropUnset deletes from set every entry that unset has with the same value, descending into objects
// that both have and deleting those left empty. Arrays are compared whole.
func dropUnset(set, unset map[string]any) {
	for k, v := range set {
		u, ok := unset[k]
		if !ok {
			continue
		}
		vm, vIsObject := v.(map[string]any)
		um, uIsObject := u.(map[string]any)
		if vIsObject && uIsObject {
			dropUnset(vm, um)
			if len(vm) == 0 {
				delete(set, k)
			}
			continue
		}
		if reflect.DeepEqual(v, u) {
			delete(set, k)
		}
	}
}

// joinDocuments joins YAML documents into one multi-document stream.
func joinDocuments(docs [][]byte) []byte {
	var b bytes.Buffer
	for i, d := range docs {
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(d)
	}
	return b.Bytes()
}

// decodeStrict decodes one YAML document into v. Unknown and duplicate fields do not stop the decoding:
// each is returned as a finding wrapping ErrStrict. err is set only when the document cannot be decoded
// at all.
func decodeStrict(data []byte, v any) (findings []error, err error) {
	j, strictErr := yaml.YAMLToJSONStrict(data)
	if strictErr != nil {
		// Duplicate keys fail the strict conversion only; anything else fails both.
		var lenientErr error
		if j, lenientErr = yaml.YAMLToJSON(data); lenientErr != nil {
			return nil, lenientErr
		}
		findings = append(findings, fmt.Errorf("%w: %v", ErrStrict, strictErr))
	}
	strictErrs, err := json.UnmarshalStrict(j, v)
	if err != nil {
		return nil, err
	}
	for _, e := range strictErrs {
		findings = append(findings, fmt.Errorf("%w: %v", ErrStrict, e))
	}
	return findings, nil
}
