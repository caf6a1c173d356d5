package oci

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

// The grammar of the OCI Distribution Spec, written as regular expressions
// so that the hand-written validators can be checked against them.
var (
	nameGrammar = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagGrammar  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

// nameCases are shared by the table test and the fuzz seed corpus.
var nameCases = []struct {
	name string
	in   string
	ok   bool
}{
	{"single", "alpine", true},
	{"digits", "0123", true},
	{"two components", "library/alpine", true},
	{"many components", "a/b/c/d/e/f/g/h/i/j", true},
	{"dot separator", "foo.bar", true},
	{"underscore", "foo_bar", true},
	{"double underscore", "foo__bar", true},
	{"single dash", "foo-bar", true},
	{"dash run", "foo---bar", true},
	{"mixed separators", "a.b_c__d-e--f", true},
	{"path words", "blobs/manifests/tags/uploads/referrers", true},
	{"one character components", "a/b", true},
	{"max length", strings.Repeat("a", MaxNameLength), true},
	{"max length with components", strings.Repeat("ab/", 85)[:MaxNameLength-1] + "b", true},
	{"empty", "", false},
	{"too long", strings.Repeat("a", MaxNameLength+1), false},
	{"uppercase", "Alpine", false},
	{"uppercase in second component", "library/Alpine", false},
	{"leading slash", "/alpine", false},
	{"trailing slash", "alpine/", false},
	{"double slash", "library//alpine", false},
	{"dot dot", "..", false},
	{"dot dot component", "library/../alpine", false},
	{"dot component", "library/./alpine", false},
	{"two dots", "foo..bar", false},
	{"triple underscore", "foo___bar", false},
	{"dot dash", "foo.-bar", false},
	{"underscore dash", "foo_-bar", false},
	{"leading dot", ".foo", false},
	{"leading dash", "-foo", false},
	{"leading underscore", "_foo", false},
	{"trailing dot", "foo.", false},
	{"trailing dash", "foo-", false},
	{"trailing underscore", "foo_", false},
	{"colon", "foo:bar", false},
	{"at sign", "foo@bar", false},
	{"space", "foo bar", false},
	{"percent escape", "foo%2fbar", false},
	{"backslash", `foo\bar`, false},
	{"non-ASCII", "caf\u00e9", false},
	{"NUL", "foo\x00bar", false},
	{"catalog word", "_catalog", false},
}

func TestValidateName(t *testing.T) {
	t.Parallel()
	for _, tc := range nameCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := ValidateName(tc.in)
			if got := err == nil; got != tc.ok {
				t.Fatalf("ValidateName(%q): got err %v, want ok=%v", tc.in, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrNameInvalid) {
				t.Errorf("ValidateName(%q): got %v, want an ErrNameInvalid", tc.in, err)
			}
			if grammar := nameGrammar.MatchString(tc.in) && len(tc.in) <= MaxNameLength; grammar != tc.ok {
				t.Errorf("case %q disagrees with the spec grammar (grammar says %v)", tc.in, grammar)
			}
		})
	}
}

var tagCases = []struct {
	name string
	in   string
	ok   bool
}{
	{"simple", "latest", true},
	{"version", "v1.2.3", true},
	{"uppercase", "RELEASE", true},
	{"leading underscore", "_internal", true},
	{"leading digit", "1.0", true},
	{"dash and dot", "1.0-rc.1_build-2", true},
	{"one character", "a", true},
	{"max length", strings.Repeat("t", MaxTagLength), true},
	{"empty", "", false},
	{"too long", strings.Repeat("t", MaxTagLength+1), false},
	{"leading dot", ".hidden", false},
	{"leading dash", "-rc", false},
	{"colon", "sha256:abc", false},
	{"slash", "a/b", false},
	{"plus", "1.0+build", false},
	{"space", "a b", false},
	{"at sign", "a@b", false},
	{"non-ASCII", "\u00e9t\u00e9", false},
}

func TestValidateTag(t *testing.T) {
	t.Parallel()
	for _, tc := range tagCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := ValidateTag(tc.in)
			if got := err == nil; got != tc.ok {
				t.Fatalf("ValidateTag(%q): got err %v, want ok=%v", tc.in, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrTagInvalid) {
				t.Errorf("ValidateTag(%q): got %v, want an ErrTagInvalid", tc.in, err)
			}
			if grammar := tagGrammar.MatchString(tc.in); grammar != tc.ok {
				t.Errorf("case %q disagrees with the spec grammar (grammar says %v)", tc.in, grammar)
			}
		})
	}
}

// FuzzValidateName checks that ValidateName accepts exactly the names of
// the spec grammar up to MaxNameLength.
func FuzzValidateName(f *testing.F) {
	for _, tc := range nameCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateName(name)
		want := nameGrammar.MatchString(name) && len(name) <= MaxNameLength
		if (err == nil) != want {
			t.Fatalf("ValidateName(%q): got err %v, grammar accepts: %v", name, err, want)
		}
		if err != nil && !errors.Is(err, ErrNameInvalid) {
			t.Fatalf("ValidateName(%q): got %v, want an ErrNameInvalid", name, err)
		}
		if err == nil && (strings.Contains(name, "..") || strings.HasPrefix(name, "/")) {
			t.Fatalf("ValidateName(%q) accepted a name that escapes a directory", name)
		}
	})
}

// FuzzValidateTag checks that ValidateTag accepts exactly the tag grammar.
func FuzzValidateTag(f *testing.F) {
	for _, tc := range tagCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, tag string) {
		err := ValidateTag(tag)
		if want := tagGrammar.MatchString(tag); (err == nil) != want {
			t.Fatalf("ValidateTag(%q): got err %v, grammar accepts: %v", tag, err, want)
		}
		if err == nil && IsDigest(tag) {
			t.Fatalf("tag %q is valid yet looks like a digest", tag)
		}
	})
}
