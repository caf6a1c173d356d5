// Package retention decides which tags of a repository a retention policy
// removes: keep the newest N, keep tags matching glob patterns or a
// semantic-version range, keep everything pushed within a duration, and
// how long untagged manifests stay. It only decides; garbage collection
// (internal/storage/gc) applies the decision inside the metadata store's
// transaction and then collects what is no longer referenced.
package retention

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"

	"github.com/outpost-registry/outpost/internal/oci"
)

// ErrInvalid marks a policy that cannot be applied.
var ErrInvalid = errors.New("invalid retention policy")

// Duration is a time.Duration written in Go notation ("720h", "90m") in
// JSON.
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("%w: %q is not a duration such as 720h", ErrInvalid, text)
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Policy is one retention policy. A policy with none of KeepNewest,
// KeepTags, KeepSemver and KeepWithin set removes no tag (it may still
// set UntaggedOlderThan). With any of them set, a tag is kept when any
// rule keeps it, and removed otherwise.
type Policy struct {
	Name string `json:"name"`
	// Repositories are the repository patterns the policy covers ("*",
	// "team/*" or exact names, as in scope maps).
	Repositories []string `json:"repositories"`
	// KeepNewest keeps the N tags whose manifests were pushed last.
	KeepNewest int `json:"keepNewest,omitempty"`
	// KeepTags keeps tags matching any of these glob patterns ("v*",
	// "release-?", "latest").
	KeepTags []string `json:"keepTags,omitempty"`
	// KeepSemver keeps tags that are semantic versions (a leading v
	// allowed) within this range (">=1.4, <2", "~2.3", "^1").
	KeepSemver string `json:"keepSemver,omitempty"`
	// KeepWithin keeps tags whose manifests were pushed within this
	// duration of the run.
	KeepWithin Duration `json:"keepWithin,omitempty"`
	// UntaggedOlderThan is how old an untagged manifest must be before it
	// is removed (never less than gc.gracePeriod; zero: gc.gracePeriod).
	UntaggedOlderThan Duration `json:"untaggedOlderThan,omitempty"`
	// Source is "config" for the policies of the configuration file
	// (read-only through the API) and empty for those made through it.
	Source string `json:"source,omitempty"`
}

// SourceConfig marks policies from the configuration file.
const SourceConfig = "config"

// Validate reports every problem of p, joined.
func (p *Policy) Validate() error {
	var errs []error
	if !validName(p.Name) {
		errs = append(errs, fmt.Errorf("name: %q: want 1-63 letters, digits, '.', '-' and '_', starting with a letter or digit", p.Name))
	}
	if len(p.Repositories) == 0 {
		errs = append(errs, errors.New("repositories: at least one repository pattern is required"))
	}
	for _, r := range p.Repositories {
		name := strings.TrimSuffix(r, "/*")
		if r != "*" && oci.ValidateName(name) != nil {
			errs = append(errs, fmt.Errorf("repositories: %q is not a repository name or pattern (name, name/* or *)", r))
		}
	}
	if p.KeepNewest < 0 {
		errs = append(errs, fmt.Errorf("keepNewest: %d is negative", p.KeepNewest))
	}
	for _, g := range p.KeepTags {
		if _, err := path.Match(g, ""); err != nil || g == "" {
			errs = append(errs, fmt.Errorf("keepTags: %q is not a glob pattern", g))
		}
	}
	if p.KeepSemver != "" {
		if _, err := semver.NewConstraint(p.KeepSemver); err != nil {
			errs = append(errs, fmt.Errorf("keepSemver: %q: %w", p.KeepSemver, err))
		}
	}
	if p.KeepWithin < 0 {
		errs = append(errs, fmt.Errorf("keepWithin: %s is negative", time.Duration(p.KeepWithin)))
	}
	if p.UntaggedOlderThan < 0 {
		errs = append(errs, fmt.Errorf("untaggedOlderThan: %s is negative", time.Duration(p.UntaggedOlderThan)))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w %q: %w", ErrInvalid, p.Name, err)
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || i > 0 && (r == '.' || r == '-' || r == '_')
		if !ok {
			return false
		}
	}
	return true
}

// Covers reports whether p applies to repo.
func (p *Policy) Covers(repo string) bool {
	return slices.ContainsFunc(p.Repositories, func(pat string) bool { return oci.MatchRepository(pat, repo) })
}

// RemovesTags reports whether p has a rule about tags.
func (p *Policy) RemovesTags() bool {
	return p.KeepNewest > 0 || len(p.KeepTags) > 0 || p.KeepSemver != "" || p.KeepWithin > 0
}

// For returns the first of policies covering repo, or nil.
func For(policies []Policy, repo string) *Policy {
	for i := range policies {
		if policies[i].Covers(repo) {
			return &policies[i]
		}
	}
	return nil
}

// Tag is a tag of a repository as the policy sees it.
type Tag struct {
	Name string
	// Pushed is when the manifest the tag points at was last put (zero:
	// unknown, the oldest).
	Pushed time.Time
	// Protected tags are kept whatever the rules say (content the site
	// must keep: synced from its parent, staged, a referrer of kept
	// content).
	Protected bool
}

// Removed returns the names of tags p removes at now, in the order
// given. Protected tags are never removed (and are kept besides the
// newest N, whenever they were pushed).
func (p *Policy) Removed(tags []Tag, now time.Time) []string {
	if !p.RemovesTags() {
		return nil
	}
	var constraint *semver.Constraints
	if p.KeepSemver != "" {
		constraint, _ = semver.NewConstraint(p.KeepSemver) // validated
	}
	newest := map[string]bool{}
	if p.KeepNewest > 0 {
		byTime := slices.DeleteFunc(slices.Clone(tags), func(t Tag) bool { return t.Protected })
		slices.SortStableFunc(byTime, func(a, b Tag) int {
			if c := b.Pushed.Compare(a.Pushed); c != 0 {
				return c
			}
			return strings.Compare(b.Name, a.Name)
		})
		for _, t := range byTime[:min(p.KeepNewest, len(byTime))] {
			newest[t.Name] = true
		}
	}
	var out []string
	for _, t := range tags {
		keep := t.Protected || newest[t.Name] ||
			(p.KeepWithin > 0 && now.Sub(t.Pushed) < time.Duration(p.KeepWithin)) ||
			slices.ContainsFunc(p.KeepTags, func(g string) bool { ok, _ := path.Match(g, t.Name); return ok })
		if !keep && constraint != nil {
			if v, err := semver.NewVersion(t.Name); err == nil {
				keep = constraint.Check(v)
			}
		}
		if !keep {
			out = append(out, t.Name)
		}
	}
	return out
}
