package v1alpha1

import (
	"bytes"
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Marshal writes c as YAML that Decode reads back: the json tag names as keys (camelCase), in the
// order the fields are declared, empty optional fields left out, two-space indentation.
//
// It writes through the same YAML library Decode reads with, so that every string is quoted exactly
// when YAML 1.2 would otherwise read it as something else (a number, a bool, null).
func Marshal(c *Cluster) ([]byte, error) {
	if c == nil {
		return nil, fmt.Errorf("marshal: nil cluster")
	}
	n, err := encodeValue(reflect.ValueOf(c).Elem())
	if err != nil {
		return nil, fmt.Errorf("marshal: %w", err)
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, fmt.Errorf("marshal: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("marshal: %w", err)
	}
	return b.Bytes(), nil
}

// encodeValue turns v into a YAML node.
func encodeValue(v reflect.Value) (*yaml.Node, error) {
	if d, ok := v.Interface().(Duration); ok {
		return scalar("!!str", formatDuration(d.Duration)), nil
	}
	if m, ok := v.Interface().(encoding.TextMarshaler); ok && v.Kind() != reflect.Pointer {
		b, err := m.MarshalText()
		if err != nil {
			return nil, err
		}
		return scalar("!!str", string(b)), nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return scalar("!!null", "null"), nil
		}
		return encodeValue(v.Elem())
	case reflect.Struct:
		m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		fs := fieldsOf(v.Type())
		for _, name := range fs.names {
			f := fs.byName[name]
			fv := v.Field(f.index)
			if f.omitEmpty && isEmptyValue(fv) {
				continue
			}
			val, err := encodeValue(fv)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			m.Content = append(m.Content, scalar("!!str", name), val)
		}
		if len(m.Content) == 0 {
			m.Style = yaml.FlowStyle
		}
		return m, nil
	case reflect.Map:
		m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		var keys []string
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String())
		}
		slices.Sort(keys)
		for _, k := range keys {
			val, err := encodeValue(v.MapIndex(reflect.ValueOf(k).Convert(v.Type().Key())))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			m.Content = append(m.Content, scalar("!!str", k), val)
		}
		if len(m.Content) == 0 {
			m.Style = yaml.FlowStyle
		}
		return m, nil
	case reflect.Slice:
		s := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for i := range v.Len() {
			val, err := encodeValue(v.Index(i))
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			s.Content = append(s.Content, val)
		}
		if len(s.Content) == 0 {
			s.Style = yaml.FlowStyle
		}
		return s, nil
	case reflect.String:
		n := scalar("!!str", v.String())
		if strings.Contains(v.String(), "\n") {
			n.Style = yaml.LiteralStyle
		}
		return n, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return scalar("!!int", strconv.FormatInt(v.Int(), 10)), nil
	case reflect.Bool:
		return scalar("!!bool", strconv.FormatBool(v.Bool())), nil
	}
	return nil, fmt.Errorf("cannot encode %s", v.Type())
}

func scalar(tag, value string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value}
}

// isEmptyValue reports whether v is left out under omitempty: the zero value, or an empty slice or map.
func isEmptyValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	}
	return v.IsZero()
}

// StarterImage is the image a starter spec boots from: the QEMU image that `kiln bake` writes.
const StarterImage = "kiln-debian-12.qcow2"

// Starter returns the spec `kiln init NAME` writes: a cluster on local QEMU VMs with one control plane
// and a pool "workers" of two, a generated SSH key, SSH reachable from this machine only, and Pod
// Security that lets kube-system run privileged pods while default enforces restricted. Defaults are
// filled in, so that the file shows every setting there is to change.
func Starter(name string) *Cluster {
	c := &Cluster{
		APIVersion: GroupVersion,
		Kind:       KindCluster,
		Metadata:   Metadata{Name: name},
		Spec: ClusterSpec{
			Provider: Provider{Name: ProviderQEMU, QEMU: &QEMUProvider{}},
			Network: Network{
				AdminCIDRs: []string{"127.0.0.1/32"},
			},
			ControlPlane: ControlPlane{Count: 1, Image: StarterImage},
			NodePools: []NodePool{
				{Name: "workers", Count: 2, Image: StarterImage},
			},
			SSH: SSH{Generate: true},
			Security: Security{
				PodSecurity: PodSecurity{
					Namespaces: map[string]PodSecurityLevels{
						"kube-system": {Enforce: LevelPrivileged},
						"default":     {Enforce: LevelRestricted},
					},
				},
			},
		},
	}
	SetDefaults(c)
	return c
}
