package cli

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/jmespath-community/go-jmespath/pkg/parsing"
)

// A command that changes something (rotates a password, creates a token)
// checks its --query before it sends the change: a query naming a field
// that no answer has (a typo, or another tool's field name) would select
// nothing, and the one-time answer would be lost.

// checkQuery refuses a --query that reads a field the answer type T does
// not have (its JSON names, or o.aliases). Types whose shape is not fixed
// (maps, interfaces, custom JSON encodings) are not checked.
func checkQuery[T any](o *outputOptions) error {
	if o.query == "" {
		return nil
	}
	known := map[string]bool{}
	for a := range o.aliases {
		known[a] = true
	}
	if !jsonFields(reflect.TypeFor[T](), known, 0) {
		return nil
	}
	fields, err := queryFields(o.query)
	if err != nil {
		return fmt.Errorf("--query %q: %w", o.query, err)
	}
	var unknown []string
	for _, f := range fields {
		if !known[f] && !slices.Contains(unknown, f) {
			unknown = append(unknown, f)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	names := make([]string, 0, len(known))
	for k := range known {
		names = append(names, k)
	}
	slices.Sort(names)
	return fmt.Errorf("--query %q: the answer has no field %s (nothing was changed); its fields are %s",
		o.query, strings.Join(unknown, ", "), strings.Join(names, ", "))
}

// queryFields returns the field names a JMESPath expression reads (not
// the keys it builds in {key: …}).
func queryFields(expr string) ([]string, error) {
	ast, err := parsing.NewParser().Parse(expr)
	if err != nil {
		return nil, err
	}
	var out []string
	var walk func(n parsing.ASTNode)
	walk = func(n parsing.ASTNode) {
		if n.NodeType == parsing.ASTField {
			if s, ok := n.Value.(string); ok {
				out = append(out, s)
			}
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(ast)
	return out, nil
}

var (
	timeType      = reflect.TypeFor[time.Time]()
	marshalerType = reflect.TypeFor[json.Marshaler]()
)

// jsonFields adds the JSON field names of t, at any depth, to names. It
// returns false when t's shape is not fixed: a map, an interface or a type
// with its own JSON encoding.
func jsonFields(t reflect.Type, names map[string]bool, depth int) bool {
	if depth > 10 {
		return true
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		return true
	case t.Implements(marshalerType) || reflect.PointerTo(t).Implements(marshalerType):
		return false
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return jsonFields(t.Elem(), names, depth+1)
	case reflect.Map, reflect.Interface:
		return false
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if f.Anonymous && name == "" {
				if !jsonFields(f.Type, names, depth+1) {
					return false
				}
				continue
			}
			if name == "" {
				name = f.Name
			}
			names[name] = true
			if !jsonFields(f.Type, names, depth+1) {
				return false
			}
		}
	}
	return true
}
