package oci

import "testing"

func TestMatchRepository(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		pattern, repo string
		want          bool
	}{
		{"*", "apps/web", true},
		{"*", "web", true},
		{"apps/web", "apps/web", true},
		{"apps/web", "apps/web2", false},
		{"apps/web", "apps", false},
		{"apps/*", "apps/web", true},
		{"apps/*", "apps/web/v2", true},
		{"apps/*", "apps", false},
		{"apps/*", "appsx/web", false},
		{"apps/*", "other/apps/web", false},
		{"a/b/*", "a/b/c", true},
		{"a/b/*", "a/bc", false},
	} {
		if got := MatchRepository(c.pattern, c.repo); got != c.want {
			t.Errorf("MatchRepository(%q, %q) = %v, want %v", c.pattern, c.repo, got, c.want)
		}
	}
}
