package strictyaml

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

// Marshal writes v, a struct or a non-nil pointer to one, as YAML that Decode reads back: the json tag
// names as keys, in the order the fields are declared, empty optional (omitempty) fields left out, map
// keys sorted, two-space indentation. A value that implements yaml.Marshaler is written as it marshals
// itself, else one that implements encoding.TextMarshaler as its text.
//
// It writes through the same YAML library Decode reads with, so that every string is quoted exactly
// when YAML 1.2 would otherwise read it as something else (a number, a bool, null).
func Marshal(v any) ([]byte, error) {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() {
		return nil, fmt.Errorf("marshal: nil")
	}
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return nil, fmt.Errorf("marshal: nil %s", rv.Type())
		}
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct {
		return nil, fmt.Errorf("marshal: %s is not a struct", rv.Type())
	}
	n, err := encodeValue(rv)
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
	if m, ok := v.Interface().(yaml.Marshaler); ok && v.Kind() != reflect.Pointer {
		x, err := m.MarshalYAML()
		if err != nil {
			return nil, err
		}
		if x == nil {
			return scalar("!!null", "null"), nil
		}
		return encodeValue(reflect.ValueOf(x))
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
