package kubecfg

import (
	"bytes"
	"fmt"

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
