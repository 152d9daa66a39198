// Package butane holds kiln's Butane sources, one template per node role, embedded in the binary.
//
// A template is text/template over Butane YAML (variant fcos, version 1.6.0, which translates to
// Ignition 3.5.0). Cluster-wide and pool-wide values are filled in before the Butane translation; the
// per-node values are placeholders (see NodeNamePlaceholder) that bootstrap/ignition fills into the
// translated Ignition config, so that Butane runs once per role and pool, not once per node.
package butane

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

// Placeholders of per-node values, filled after translation.
const (
	// NodeNamePlaceholder stands where a node's own name goes.
	NodeNamePlaceholder = "@@KILN_NODE_NAME@@"
	// NodeAddressPlaceholder stands where a node's own private address goes, where the provider
	// gives nodes their addresses before their configs are rendered; elsewhere it is filled with "".
	NodeAddressPlaceholder = "@@KILN_NODE_ADDRESS@@"
)

//go:embed templates/*.bu.tmpl
var files embed.FS

// Source returns the Butane template of a role.
func Source(role string) ([]byte, error) {
	if strings.HasPrefix(role, "_") {
		return nil, fmt.Errorf("butane: no template for role %q (have %s)", role, strings.Join(Roles(), ", "))
	}
	b, err := files.ReadFile("templates/" + role + ".bu.tmpl")
	if err != nil {
		return nil, fmt.Errorf("butane: no template for role %q (have %s)", role, strings.Join(Roles(), ", "))
	}
	return b, nil
}

// Shared returns the templates that every role's template may call (files named _*.bu.tmpl).
func Shared() (map[string][]byte, error) {
	names, err := fs.Glob(files, "templates/_*.bu.tmpl")
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(names))
	for _, n := range names {
		b, err := files.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out[strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".bu.tmpl")] = b
	}
	return out, nil
}

// Roles lists the roles that have a template, sorted.
func Roles() []string {
	names, _ := fs.Glob(files, "templates/*.bu.tmpl")
	var roles []string
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".bu.tmpl")
		if !strings.HasPrefix(base, "_") {
			roles = append(roles, base)
		}
	}
	sort.Strings(roles)
	return roles
}
