package strictyaml

import (
	"strconv"
	"strings"
)

// Paths name a value in a document the way a user reads it: fields joined with dots
// ("spec.network.nodeCIDR"), sequence elements by index ("spec.nodePools[1]"), map entries by key, after
// a dot when the key is plain ("spec.security.podSecurity.namespaces.kube-system") and quoted in brackets
// otherwise ("spec.nodePools[0].labels[\"example.com/role\"]"). The document itself is the empty path.

// FieldPath is the path of field name in the mapping at p.
func FieldPath(p, name string) string {
	if p == "" {
		return name
	}
	return p + "." + name
}

// IndexPath is the path of element i of the sequence at p.
func IndexPath(p string, i int) string {
	return p + "[" + strconv.Itoa(i) + "]"
}

// KeyPath is the path of the entry key in the map at p.
func KeyPath(p, key string) string {
	if isPlainKey(key) {
		return FieldPath(p, key)
	}
	return p + "[" + strconv.Quote(key) + "]"
}

// isPlainKey reports whether key can follow a dot in a path without ambiguity.
func isPlainKey(key string) bool {
	if key == "" {
		return false
	}
	for _, r := range key {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
		default:
			return false
		}
	}
	return true
}

// parentPath is the path of the mapping or sequence that holds p; "" for a top-level field.
func parentPath(p string) string {
	switch {
	case strings.HasSuffix(p, `"]`):
		// A quoted key: inside strconv.Quote's output every '"' is escaped, so the last `["` opens it.
		if i := strings.LastIndex(p[:len(p)-2], `["`); i >= 0 {
			return p[:i]
		}
	case strings.HasSuffix(p, "]"):
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

// isWithin reports whether path p is base or inside it.
func isWithin(p, base string) bool {
	if base == "" || p == base {
		return true
	}
	if !strings.HasPrefix(p, base) {
		return false
	}
	c := p[len(base)]
	return c == '.' || c == '['
}
