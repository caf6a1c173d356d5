// Package helmvalues converts the settings files of the connected-registry
// extension into values of the chart deploy/helm/outpost. Those files are
// JSON objects whose keys are dotted value paths ("service.clusterIP",
// "tls.crt") and whose values are all strings ("false", "443"); Helm reads
// a dotted key as one literal top-level name. Convert nests the keys,
// types the values as the chart declares them and refuses any key the
// chart does not know, so that a setting is never silently ignored.
package helmvalues

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Sentinel errors, wrapped with the file and key they concern.
var (
	// ErrUnknownKey: a key that is not a value of the chart.
	ErrUnknownKey = errors.New("not a value of the outpost chart")
	// ErrBadValue: a value of the wrong type for its key.
	ErrBadValue = errors.New("bad value")
	// ErrConflict: one key given twice with different values.
	ErrConflict = errors.New("conflicting values")
	// ErrBadFile: a settings file that is not a JSON object.
	ErrBadFile = errors.New("bad settings file")
)

// Kind is the type of a chart value.
type Kind int

// The kinds of chart values.
const (
	String Kind = iota
	Bool
	Int
	// NullableBool and NullableInt also accept null (unset).
	NullableBool
	NullableInt
	// Object and Array are taken as given (resources, tolerations, …);
	// they cannot be spelled as dotted keys below them.
	Object
	Array
)

func (k Kind) String() string {
	names := [...]string{"a string", "true or false", "an integer", "true, false or null", "an integer or null", "an object", "a list"}
	if k < 0 || int(k) >= len(names) {
		return "Kind(" + strconv.Itoa(int(k)) + ")"
	}
	return names[k]
}

// Keys are the chart's values by dotted path (values.yaml of
// deploy/helm/outpost; a test keeps them equal to its values.schema.json).
var Keys = map[string]Kind{
	"mode":                                 String,
	"connectionString":                     String,
	"existingConnectionStringSecret":       String,
	"loginServer":                          String,
	"admin.existingSecret":                 String,
	"logLevel":                             String,
	"image.repository":                     String,
	"image.tag":                            String,
	"image.pullPolicy":                     String,
	"service.type":                         String,
	"service.nodePort":                     NullableInt,
	"service.clusterIP":                    String,
	"service.port":                         Int,
	"pvc.storageClassName":                 String,
	"pvc.storageRequest":                   String,
	"cert-manager.enabled":                 Bool,
	"cert-manager.install":                 Bool,
	"tls.crt":                              String,
	"tls.key":                              String,
	"tls.cacrt":                            String,
	"tls.secret":                           String,
	"trustDistribution.enabled":            Bool,
	"trustDistribution.skipNodeSelector":   Bool,
	"trustDistribution.useNodeSelector":    NullableBool,
	"trustDistribution.containerdCertsDir": String,
	"trustDistribution.tolerations":        Array,
	"prePull.enabled":                      Bool,
	"prePull.criSocket":                    String,
	"prePull.nodeTokenSecret":              String,
	"prePull.concurrency":                  Int,
	"prePull.nodeLabels":                   Bool,
	"prePull.resources":                    Object,
	"resources":                            Object,
	"nodeSelector":                         Object,
	"tolerations":                          Array,
	"podSecurityContext":                   Object,
}

// File is one settings file: its name (for messages) and content.
type File struct {
	Name string
	Data []byte
}

// Convert merges settings files into nested chart values. Each file is a
// JSON object whose keys may be dotted paths, nested objects or a mix of
// both. A key given twice (in two files, or dotted and nested) must have
// the same value.
func Convert(files ...File) (map[string]any, error) {
	flat := map[string]any{}
	from := map[string]string{}
	var errs []error
	for _, f := range files {
		var doc map[string]any
		dec := json.NewDecoder(bytes.NewReader(bytes.TrimPrefix(f.Data, []byte("\uFEFF"))))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			return nil, fmt.Errorf("%w: %s: %w (want a JSON object of settings)", ErrBadFile, f.Name, err)
		}
		if doc == nil {
			return nil, fmt.Errorf("%w: %s: want a JSON object of settings, got null", ErrBadFile, f.Name)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: %s: text after the JSON object", ErrBadFile, f.Name)
		}
		for _, kv := range flatten("", doc) {
			v, err := typed(kv.key, kv.val)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", f.Name, err))
				continue
			}
			if old, ok := flat[kv.key]; ok && !reflect.DeepEqual(old, v) {
				errs = append(errs, fmt.Errorf("%w: %s is %v in %s and %v in %s", ErrConflict, kv.key, show(kv.key, old), from[kv.key], show(kv.key, v), f.Name))
				continue
			}
			flat[kv.key], from[kv.key] = v, f.Name
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	out := map[string]any{}
	for k, v := range flat {
		parts := strings.Split(k, ".")
		m := out
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		m[parts[len(parts)-1]] = v
	}
	return out, nil
}

type keyValue struct {
	key string
	val any
}

// flatten lists the leaves of doc by dotted path, stopping at a known
// key, so that an Object or Array value stays whole.
func flatten(prefix string, doc map[string]any) []keyValue {
	names := make([]string, 0, len(doc))
	for k := range doc {
		names = append(names, k)
	}
	slices.Sort(names)
	var out []keyValue
	for _, k := range names {
		path := prefix + k
		if m, ok := doc[k].(map[string]any); ok {
			if _, known := Keys[path]; !known {
				out = append(out, flatten(path+".", m)...)
				continue
			}
		}
		out = append(out, keyValue{path, doc[k]})
	}
	return out
}

// typed checks that key is a chart value and converts v to its kind; the
// extension writes booleans and numbers as strings.
func typed(key string, v any) (any, error) {
	kind, ok := Keys[key]
	if !ok {
		return nil, unknown(key)
	}
	bad := func() error {
		return fmt.Errorf("%w: %s must be %s, got %s", ErrBadValue, key, kind, describe(v))
	}
	switch kind {
	case String:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case Bool, NullableBool:
		switch x := v.(type) {
		case nil:
			if kind == NullableBool {
				return nil, nil
			}
		case bool:
			return x, nil
		case string:
			if x == "true" || x == "false" {
				return x == "true", nil
			}
		}
	case Int, NullableInt:
		switch x := v.(type) {
		case nil:
			if kind == NullableInt {
				return nil, nil
			}
		case json.Number:
			if n, err := strconv.ParseUint(x.String(), 10, 31); err == nil {
				return int(n), nil
			}
		case string:
			if n, err := strconv.ParseUint(x, 10, 31); err == nil {
				return int(n), nil
			}
		}
	case Object:
		if m, ok := v.(map[string]any); ok {
			return plain(m), nil
		}
	case Array:
		if a, ok := v.([]any); ok {
			return plain(a), nil
		}
	}
	return nil, bad()
}

// unknown explains a key the chart does not have, naming the nearest
// known ones.
func unknown(key string) error {
	for k, kind := range Keys {
		if (kind == Object || kind == Array) && strings.HasPrefix(key, k+".") {
			return fmt.Errorf("%w: %s: give %s as one value (%s), not as dotted keys below it", ErrUnknownKey, key, k, kind)
		}
	}
	var near []string
	group, _, _ := strings.Cut(key, ".")
	for k := range Keys {
		if g, _, _ := strings.Cut(k, "."); strings.EqualFold(g, group) {
			near = append(near, k)
		}
	}
	slices.Sort(near)
	if len(near) == 0 {
		return fmt.Errorf("%w: %s (docs/kubernetes.md lists the values)", ErrUnknownKey, key)
	}
	return fmt.Errorf("%w: %s (known: %s)", ErrUnknownKey, key, strings.Join(near, ", "))
}

func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(x)
	case json.Number:
		return x.String()
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	}
	return fmt.Sprint(v)
}

// show prints a value in a conflict message, hiding secrets.
func show(key string, v any) string {
	switch key {
	case "connectionString", "tls.key":
		return "<hidden>"
	}
	return describe(v)
}

// plain turns json.Numbers inside objects and lists into int or float64,
// so that they encode as YAML numbers.
func plain(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = plain(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = plain(e)
		}
		return out
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		if f, err := x.Float64(); err == nil {
			return f
		}
		return x.String()
	}
	return v
}

// Header is written above converted values.
const Header = "# Values of the outpost Helm chart, converted by `outpost helm-values`.\n" +
	"# They may hold the connection string and a TLS key: keep this file private.\n"

// Marshal renders values as YAML for helm -f, after Header.
func Marshal(values map[string]any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(Header)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(values); err != nil {
		return nil, fmt.Errorf("encode values: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode values: %w", err)
	}
	return b.Bytes(), nil
}
