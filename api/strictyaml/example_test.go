package strictyaml_test

import (
	"fmt"

	"github.com/kiln-dev/kiln/api/strictyaml"
)

func ExampleDecode() {
	type Pool struct {
		Name  string `json:"name"`
		Count int    `json:"count"`
	}
	type Fleet struct {
		Kind  string `json:"kind"`
		Pools []Pool `json:"pools"`
	}
	data := []byte(`kind: Fleet
pools:
  - name: web
    cuont: 3
  - name: db
    count: two
`)
	var f Fleet
	doc, findings := strictyaml.Decode(data, &f, strictyaml.Options{Kind: "Fleet"})
	if doc != nil && f.Pools[1].Name == "db" {
		// Validation reports issues by path; the document places them.
		if loc, ok := doc.Locate(strictyaml.Issue{Path: "pools[1].name", Severity: strictyaml.SeverityWarning, Message: "db is a reserved name"}); ok {
			findings = append(findings, loc)
		}
	}
	strictyaml.SortFindings(findings)
	fmt.Println(&strictyaml.Error{File: "fleet.yaml", Findings: findings})
	// Output:
	// fleet.yaml:4:5: pools[0].cuont: unknown field "cuont", did you mean "count"?
	// fleet.yaml:5:11: pools[1].name: warning: db is a reserved name
	// fleet.yaml:6:12: pools[1].count: expected an integer, got string "two"
}
