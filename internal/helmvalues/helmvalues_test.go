package helmvalues

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const tutorialCS = "ConnectedRegistryName=myconnectedregistry;SyncTokenName=myconnectedregistry-sync-token;SyncTokenPassword=xxxxxxxx;ParentGatewayEndpoint=myacrregistry.eastus.data.azurecr.io;ParentEndpointProtocol=https"

// The tutorial's files: a protected settings file with the connection
// string and the certificate, and the settings given with --config, which
// the extension passes as strings.
var (
	tutorialProtected = `{
  "connectionString": "` + tutorialCS + `",
  "service.clusterIP": "192.100.100.1",
  "tls.crt": "Y2VydA==",
  "tls.key": "a2V5",
  "tls.cacrt": "Y2E="
}
`
	tutorialSettings = `{"cert-manager.enabled": "false", "cert-manager.install": "false", "service.port": "443",
 "trustDistribution.skipNodeSelector": "true", "pvc.storageRequest": "250Gi"}`
)

func TestConvertTutorialFiles(t *testing.T) {
	t.Parallel()
	got, err := Convert(File{"settings.json", []byte(tutorialSettings)}, File{"protected-settings-extension.json", []byte(tutorialProtected)})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"connectionString":  tutorialCS,
		"service":           map[string]any{"clusterIP": "192.100.100.1", "port": 443},
		"tls":               map[string]any{"crt": "Y2VydA==", "key": "a2V5", "cacrt": "Y2E="},
		"cert-manager":      map[string]any{"enabled": false, "install": false},
		"trustDistribution": map[string]any{"skipNodeSelector": true},
		"pvc":               map[string]any{"storageRequest": "250Gi"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("converted values:\ngot  %#v\nwant %#v", got, want)
	}
	b, err := Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), Header) {
		t.Errorf("no header:\n%s", b)
	}
	var back map[string]any
	if err := yaml.Unmarshal(b, &back); err != nil {
		t.Fatalf("output is not YAML: %v\n%s", err, b)
	}
	if !reflect.DeepEqual(back, want) {
		t.Errorf("YAML round trip:\ngot  %#v\nwant %#v", back, want)
	}
}

func TestConvertNestedAndMixed(t *testing.T) {
	t.Parallel()
	got, err := Convert(File{"v.json", []byte(`{"service": {"clusterIP": "10.96.0.5"}, "service.port": 8443,
		"trustDistribution": {"useNodeSelector": null, "tolerations": [{"operator": "Exists"}]},
		"resources": {"limits": {"memory": "1Gi", "cpu": 2}}, "mode": "root"}`)})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"mode":              "root",
		"service":           map[string]any{"clusterIP": "10.96.0.5", "port": 8443},
		"trustDistribution": map[string]any{"useNodeSelector": nil, "tolerations": []any{map[string]any{"operator": "Exists"}}},
		"resources":         map[string]any{"limits": map[string]any{"memory": "1Gi", "cpu": int64(2)}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %#v\nwant %#v", got, want)
	}
}

func TestConvertRefuses(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		files []string
		want  error
		say   []string
	}{
		{"unknown key", []string{`{"service.clusterIP": "10.0.0.1", "tls.crtt": "x"}`}, ErrUnknownKey, []string{"tls.crtt", "f0.json", "tls.crt"}},
		{"unknown group", []string{`{"servce.clusterIP": "10.0.0.1"}`}, ErrUnknownKey, []string{"servce.clusterIP", "docs/kubernetes.md"}},
		{"unknown nested", []string{`{"tls": {"certificate": "x"}}`}, ErrUnknownKey, []string{"tls.certificate"}},
		{"dotted below an object", []string{`{"resources.limits.memory": "1Gi"}`}, ErrUnknownKey, []string{"give resources as one value"}},
		{"bad boolean", []string{`{"cert-manager.enabled": "no"}`}, ErrBadValue, []string{"cert-manager.enabled must be true or false", `"no"`}},
		{"bad port", []string{`{"service.port": "https"}`}, ErrBadValue, []string{"service.port must be an integer"}},
		{"number for a string", []string{`{"pvc.storageRequest": 20}`}, ErrBadValue, []string{"pvc.storageRequest must be a string"}},
		{"two files disagree", []string{`{"service.clusterIP": "10.0.0.1"}`, `{"service": {"clusterIP": "10.0.0.2"}}`}, ErrConflict,
			[]string{"service.clusterIP", `"10.0.0.1" in f0.json`, `"10.0.0.2" in f1.json`}},
		{"secret conflict hidden", []string{`{"connectionString": "a"}`, `{"connectionString": "b"}`}, ErrConflict, []string{"<hidden>"}},
		{"not an object", []string{`["service.clusterIP"]`}, ErrBadFile, []string{"f0.json", "JSON object"}},
		{"trailing text", []string{`{} {}`}, ErrBadFile, []string{"after the JSON object"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var files []File
			for i, f := range c.files {
				files = append(files, File{Name: "f" + string(rune('0'+i)) + ".json", Data: []byte(f)})
			}
			_, err := Convert(files...)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			for _, s := range c.say {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if strings.Contains(err.Error(), `"b"`) {
				t.Errorf("error shows a secret: %v", err)
			}
		})
	}
	// Equal values given twice are fine, and a BOM is skipped.
	if _, err := Convert(File{"a", []byte("\uFEFF" + `{"service.clusterIP": "10.0.0.1"}`)}, File{"b", []byte(`{"service": {"clusterIP": "10.0.0.1"}}`)}); err != nil {
		t.Errorf("equal values: %v", err)
	}
}

// TestKeysMatchSchema: Keys are exactly the chart's values, with the
// types of its values.schema.json, nested and dotted.
func TestKeysMatchSchema(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../deploy/helm/outpost/values.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	type prop struct {
		Type       any             `json:"type"`
		Properties map[string]prop `json:"properties"`
		Enum       []any           `json:"enum"`
	}
	var schema prop
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	kindOf := func(p prop) Kind {
		switch ty := p.Type.(type) {
		case string:
			return map[string]Kind{"string": String, "boolean": Bool, "integer": Int, "object": Object, "array": Array}[ty]
		case []any:
			if slices.Contains(ty, any("null")) && slices.Contains(ty, any("boolean")) {
				return NullableBool
			}
			if slices.Contains(ty, any("null")) && slices.Contains(ty, any("integer")) {
				return NullableInt
			}
		}
		return -1
	}
	nested := map[string]Kind{}
	var walk func(prefix string, props map[string]prop)
	walk = func(prefix string, props map[string]prop) {
		for k, p := range props {
			if strings.Contains(k, ".") || k == "global" {
				continue
			}
			if p.Properties != nil {
				walk(prefix+k+".", p.Properties)
				continue
			}
			nested[prefix+k] = kindOf(p)
		}
	}
	walk("", schema.Properties)
	for k, kind := range Keys {
		if got, ok := nested[k]; !ok || got != kind {
			t.Errorf("Keys[%q] = %v; the schema has it: %v, as %v", k, kind, ok, got)
		}
	}
	for k := range nested {
		if _, ok := Keys[k]; !ok {
			t.Errorf("the schema has the value %q, which Keys lacks", k)
		}
	}
	for k := range Keys {
		if !strings.Contains(k, ".") {
			continue
		}
		if _, ok := schema.Properties[k]; !ok {
			t.Errorf("the schema does not accept the dotted key %q", k)
		}
	}
	for k := range schema.Properties {
		if _, ok := Keys[k]; strings.Contains(k, ".") && !ok {
			t.Errorf("the schema accepts the dotted key %q, which Keys lacks", k)
		}
	}
}
