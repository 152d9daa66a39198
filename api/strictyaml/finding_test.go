package strictyaml

import "testing"

func errAt(path string, line, col int, msg string) Finding {
	return Finding{Path: path, Line: line, Column: col, Severity: SeverityError, Message: msg}
}

func warnAt(path string, line, col int, msg string) Finding {
	return Finding{Path: path, Line: line, Column: col, Severity: SeverityWarning, Message: msg}
}

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{
			name: "file, position, path",
			err: &Error{File: "cluster.yaml", Findings: []Finding{
				errAt("spec.controlPlane.count", 9, 12, "must be odd"),
				warnAt("spec.network.adminCIDRs[0]", 14, 9, "0.0.0.0/0 lets the whole internet reach SSH on the nodes"),
			}},
			want: "cluster.yaml:9:12: spec.controlPlane.count: must be odd\n" +
				"cluster.yaml:14:9: spec.network.adminCIDRs[0]: warning: 0.0.0.0/0 lets the whole internet reach SSH on the nodes",
		},
		{
			name: "unknown position and no path",
			err:  &Error{File: "cluster.yaml", Findings: []Finding{errAt("", 0, 0, "empty document")}},
			want: "cluster.yaml: empty document",
		},
		{
			name: "line without column",
			err:  &Error{File: "cluster.yaml", Findings: []Finding{errAt("", 3, 0, "invalid YAML: bad")}},
			want: "cluster.yaml:3: invalid YAML: bad",
		},
		{
			name: "no file name",
			err:  &Error{Findings: []Finding{errAt("kind", 2, 7, "unsupported kind")}},
			want: "2:7: kind: unsupported kind",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}
