package kube

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var imagesCases = []struct {
	name    string
	in      string
	want    []string
	wantErr string // substring of the error; empty for success
}{
	{name: "empty", in: "", want: nil},
	{name: "only comments", in: "# nothing\n", want: nil},
	{name: "only separators", in: "---\n---\n", want: nil},
	{name: "pod", in: `
apiVersion: v1
kind: Pod
spec:
  containers:
    - name: a
      image: nginx:1.25
`, want: []string{"nginx:1.25"}},
	{name: "deployment, statefulset, daemonset", in: `
apiVersion: apps/v1
kind: Deployment
spec:
  template:
    spec:
      containers:
        - {name: web, image: "web:1"}
---
apiVersion: apps/v1
kind: StatefulSet
spec:
  template:
    spec:
      containers:
        - name: db
          image: postgres:16
---
apiVersion: apps/v1
kind: DaemonSet
spec:
  template:
    spec:
      containers:
        - name: agent
          image: ghcr.io/example/agent:v2
`, want: []string{"web:1", "postgres:16", "ghcr.io/example/agent:v2"}},
	{name: "job and cronjob", in: `
apiVersion: batch/v1
kind: Job
spec:
  template:
    spec:
      containers:
        - name: once
          image: example.com/batch/once:1
---
apiVersion: batch/v1
kind: CronJob
spec:
  schedule: "0 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          initContainers:
            - name: prepare
              image: example.com/batch/prepare:1
          containers:
            - name: hourly
              image: example.com/batch/hourly:1
`, want: []string{"example.com/batch/once:1", "example.com/batch/prepare:1", "example.com/batch/hourly:1"}},
	{name: "init and ephemeral containers", in: `
kind: Pod
spec:
  initContainers:
    - name: init
      image: init:1
  containers:
    - name: main
      image: main:1
  ephemeralContainers:
    - name: debugger
      image: busybox:1.36
`, want: []string{"init:1", "main:1", "busybox:1.36"}},
	{name: "duplicates reported once, in order", in: `
kind: Pod
spec:
  containers:
    - {name: a, image: b:1}
    - {name: b, image: a:1}
    - {name: c, image: b:1}
---
kind: Pod
spec:
  initContainers:
    - {name: d, image: a:1}
    - {name: e, image: c:1}
`, want: []string{"b:1", "a:1", "c:1"}},
	{name: "list of objects", in: `
apiVersion: v1
kind: List
items:
  - kind: Pod
    spec:
      containers:
        - {name: a, image: one:1}
  - kind: Pod
    spec:
      containers:
        - {name: b, image: two:2}
`, want: []string{"one:1", "two:2"}},
	{name: "anchors and aliases", in: `
kind: Pod
spec:
  containers:
    - &c {name: a, image: anchored:1}
  initContainers:
    - *c
`, want: []string{"anchored:1"}},
	{name: "container defined elsewhere", in: `
x-defaults:
  sidecar: &sidecar {name: proxy, image: envoy:1.30}
  tag: &tag app:2
kind: Pod
spec:
  containers:
    - *sidecar
    - name: app
      image: *tag
`, want: []string{"envoy:1.30", "app:2"}},
	{name: "container without image", in: `
kind: Pod
spec:
  containers:
    - name: a
    - name: b
      image: ""
    - name: c
      image: [not, a, scalar]
    - just-a-string
`, want: nil},
	{name: "image outside container lists", in: `
kind: ConfigMap
data:
  image: not-a-container:1
spec:
  image: also-not:1
  containers: "a string, not a list"
`, want: nil},
	{name: "invalid YAML", in: "kind: Pod\nspec:\n  containers: [\n", wantErr: "YAML document 1"},
	{name: "invalid second document", in: "kind: Pod\n---\nkind: [Pod\n", wantErr: "YAML document 2"},
	{name: "tab indentation", in: "kind: Pod\nspec:\n\tcontainers: []\n", wantErr: "YAML document 1"},
}

func TestImages(t *testing.T) {
	t.Parallel()
	for _, tc := range imagesCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Images(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got (%q, %v), want an error containing %q", got, err, tc.wantErr)
				}
				if got != nil {
					t.Errorf("got images %q with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestImagesHelmOutput(t *testing.T) {
	t.Parallel()
	f, err := os.Open(filepath.Join("testdata", "helm-rendered.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := Images(f)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"registry.example.com/app/migrate:1.4.0",
		"registry.example.com/app/server:1.4.0",
		"registry.example.com/proxy@sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb",
		"busybox",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// FuzzKubeImages checks that Images never panics, reports each image once
// and never an empty one, and gives the same answer twice.
func FuzzKubeImages(f *testing.F) {
	for _, tc := range imagesCases {
		f.Add([]byte(tc.in))
	}
	if b, err := os.ReadFile(filepath.Join("testdata", "helm-rendered.yaml")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := Images(strings.NewReader(string(in)))
		if err != nil {
			if got != nil || !strings.HasPrefix(err.Error(), "YAML document ") {
				t.Fatalf("got (%q, %v)", got, err)
			}
			return
		}
		seen := map[string]bool{}
		for _, img := range got {
			if img == "" || seen[img] {
				t.Fatalf("got %q: empty or repeated image", got)
			}
			seen[img] = true
		}
		again, err := Images(strings.NewReader(string(in)))
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("second run: got (%q, %v), want %q", again, err, got)
		}
	})
}

func BenchmarkImages(b *testing.B) {
	in, err := os.ReadFile(filepath.Join("testdata", "helm-rendered.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := Images(strings.NewReader(string(in))); err != nil {
			b.Fatal(err)
		}
	}
}
