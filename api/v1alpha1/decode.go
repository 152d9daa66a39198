package v1alpha1

import (
	"reflect"
	"slices"

	"github.com/kiln-dev/kiln/api/strictyaml"
)

// decodeOptions say what a cluster spec is to the strict decoder.
var decodeOptions = strictyaml.Options{
	Kind: KindCluster,
	Noun: "cluster",
	IntOrString: map[reflect.Type][]string{
		reflect.TypeFor[Health](): {"maxUnhealthy"},
	},
}

// Decode reads the cluster spec in data strictly and returns it with defaults applied (see SetDefaults)
// and validated. filename only names the file in findings.
//
// If anything is wrong, Decode returns a nil cluster and a *strictyaml.Error listing every finding at
// once, each with its path and line:column: YAML syntax, an empty file or more than one document,
// unknown fields (with a suggestion when a known field is close), duplicate keys, values of the wrong
// type and every validation rule (see Validate). Warnings do not make Decode fail and are dropped; use
// DecodeWithWarnings to get them.
func Decode(data []byte, filename string) (*Cluster, error) {
	c, _, err := DecodeWithWarnings(data, filename)
	return c, err
}

// DecodeWithWarnings is Decode that also returns the warning-severity findings of a spec that decoded,
// sorted by position. When err is not nil it is a *strictyaml.Error holding every finding, warnings
// included, and the cluster and warnings are nil. A strict caller treats warnings as errors:
//
//	c, warnings, err := v1alpha1.DecodeWithWarnings(data, name)
//	if err == nil && strict && len(warnings) > 0 {
//		err = &strictyaml.Error{File: name, Findings: warnings}
//	}
func DecodeWithWarnings(data []byte, filename string) (*Cluster, []strictyaml.Finding, error) {
	c, findings := decodeFindings(data)
	if strictyaml.HasErrors(findings) {
		return nil, nil, &strictyaml.Error{File: filename, Findings: findings}
	}
	return c, findings, nil
}

// decodeFindings decodes, defaults and validates data and returns every finding, sorted. The cluster is
// only meaningful when no finding is an error.
func decodeFindings(data []byte) (*Cluster, []strictyaml.Finding) {
	c := &Cluster{}
	doc, findings := strictyaml.Decode(data, c, decodeOptions)
	if doc == nil {
		return nil, findings
	}
	SetDefaults(c)
	findings = append(findings, doc.Defaulted()...)
	for _, is := range validate(c) {
		if f, ok := doc.Locate(is); ok {
			findings = append(findings, f)
		}
	}
	if (c.APIVersion != "" && c.APIVersion != GroupVersion) || (c.Kind != "" && c.Kind != KindCluster) {
		// Not a document of this package: what else is wrong would only be noise.
		findings = slices.DeleteFunc(findings, func(f strictyaml.Finding) bool {
			return f.Path != "apiVersion" && f.Path != "kind" && f.Path != ""
		})
	}
	findings = strictyaml.Dedupe(findings)
	strictyaml.SortFindings(findings)
	return c, findings
}
