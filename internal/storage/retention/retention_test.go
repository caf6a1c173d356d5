package retention

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRemoved(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	ago := func(h int) time.Time { return now.Add(-time.Duration(h) * time.Hour) }
	tags := []Tag{
		{Name: "latest", Pushed: ago(1)},
		{Name: "v1.0.0", Pushed: ago(100)},
		{Name: "v1.4.2", Pushed: ago(50)},
		{Name: "v2.0.0", Pushed: ago(10)},
		{Name: "build-7", Pushed: ago(5)},
		{Name: "build-6", Pushed: ago(6)},
		{Name: "build-5", Pushed: ago(7)},
		{Name: "staged", Pushed: ago(200), Protected: true},
		{Name: "unknown"},
	}
	cases := []struct {
		name string
		p    Policy
		want []string
	}{
		{"no tag rule", Policy{UntaggedOlderThan: Duration(time.Hour)}, nil},
		{"keep newest 3", Policy{KeepNewest: 3},
			[]string{"v1.0.0", "v1.4.2", "v2.0.0", "build-5", "unknown"}},
		{"keep glob", Policy{KeepTags: []string{"v*", "latest"}},
			[]string{"build-7", "build-6", "build-5", "unknown"}},
		{"keep semver range", Policy{KeepSemver: ">=1.4, <2"},
			[]string{"latest", "v1.0.0", "v2.0.0", "build-7", "build-6", "build-5", "unknown"}},
		{"keep within", Policy{KeepWithin: Duration(8 * time.Hour)},
			[]string{"v1.0.0", "v1.4.2", "v2.0.0", "unknown"}},
		{"rules add up", Policy{KeepNewest: 1, KeepTags: []string{"build-*"}, KeepSemver: "^2"},
			[]string{"v1.0.0", "v1.4.2", "unknown"}},
		{"keep newest 1, protected kept besides", Policy{KeepNewest: 1},
			[]string{"v1.0.0", "v1.4.2", "v2.0.0", "build-7", "build-6", "build-5", "unknown"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := c.p.Removed(tags, now)
			if !slices.Equal(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
			if slices.Contains(got, "staged") {
				t.Error("a protected tag is removed")
			}
		})
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		p    Policy
		want []string
	}{
		{"valid", Policy{Name: "p", Repositories: []string{"*", "team/*", "app"}, KeepNewest: 3, KeepTags: []string{"v*"}, KeepSemver: "~1.2"}, nil},
		{"everything wrong", Policy{Repositories: []string{"Bad//"}, KeepNewest: -1, KeepTags: []string{"[", ""}, KeepSemver: "not a range",
			KeepWithin: Duration(-time.Second), UntaggedOlderThan: Duration(-time.Second)},
			[]string{`name: ""`, `"Bad//" is not a repository`, "keepNewest: -1", `keepTags: "["`, `keepTags: ""`, `keepSemver: "not a range"`, "keepWithin: -1s", "untaggedOlderThan: -1s"}},
		{"no repository", Policy{Name: "p"}, []string{"repositories: at least one"}},
		{"bad name", Policy{Name: "-a/b", Repositories: []string{"*"}}, []string{`name: "-a/b"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			err := c.p.Validate()
			if (err == nil) != (c.want == nil) {
				t.Fatalf("got %v, want errors %v", err, c.want)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("got %v, want ErrInvalid", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestPolicyJSON(t *testing.T) {
	t.Parallel()
	var p Policy
	if err := json.Unmarshal([]byte(`{"name":"p","repositories":["a"],"keepWithin":"720h","untaggedOlderThan":"24h"}`), &p); err != nil {
		t.Fatal(err)
	}
	if time.Duration(p.KeepWithin) != 720*time.Hour || time.Duration(p.UntaggedOlderThan) != 24*time.Hour {
		t.Fatalf("got %+v", p)
	}
	b, err := json.Marshal(p)
	if err != nil || !strings.Contains(string(b), `"keepWithin":"720h0m0s"`) {
		t.Fatalf("got %s %v", b, err)
	}
	if err := json.Unmarshal([]byte(`{"keepWithin":"30 days"}`), &p); !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v, want ErrInvalid", err)
	}
	if got := For([]Policy{{Name: "a", Repositories: []string{"team/*"}}, {Name: "b", Repositories: []string{"*"}}}, "team/x"); got == nil || got.Name != "a" {
		t.Fatalf("For: got %+v, want the first covering policy", got)
	}
}
