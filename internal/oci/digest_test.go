package oci

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

var (
	hex64  = strings.Repeat("0123456789abcdef", 4)
	hex128 = strings.Repeat("0123456789abcdef", 8)
	// digestGrammar is what ParseDigest may accept: the two registered
	// algorithms with lowercase hex of their exact length.
	digestGrammar = regexp.MustCompile(`^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$`)
)

var digestCases = []struct {
	name string
	in   string
	ok   bool
}{
	{"sha256", "sha256:" + hex64, true},
	{"sha512", "sha512:" + hex128, true},
	{"sha256 of empty", "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", true},
	{"empty", "", false},
	{"no algorithm", hex64, false},
	{"no hex", "sha256:", false},
	{"only colon", ":", false},
	{"sha256 short", "sha256:" + hex64[:63], false},
	{"sha256 long", "sha256:" + hex64 + "0", false},
	{"sha256 with sha512 length", "sha256:" + hex128, false},
	{"sha512 with sha256 length", "sha512:" + hex64, false},
	{"uppercase hex", "sha256:" + strings.ToUpper(hex64), false},
	{"uppercase algorithm", "SHA256:" + hex64, false},
	{"non-hex", "sha256:" + strings.Repeat("g", 64), false},
	{"sha384 is not accepted", "sha384:" + strings.Repeat("a", 96), false},
	{"md5", "md5:" + strings.Repeat("a", 32), false},
	{"unknown algorithm", "blake3:" + hex64, false},
	{"leading space", " sha256:" + hex64, false},
	{"trailing newline", "sha256:" + hex64 + "\n", false},
	{"two colons", "sha256:" + hex64 + ":", false},
}

func TestParseDigest(t *testing.T) {
	t.Parallel()
	for _, tc := range digestCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d, err := ParseDigest(tc.in)
			if got := err == nil; got != tc.ok {
				t.Fatalf("ParseDigest(%q): got (%q, %v), want ok=%v", tc.in, d, err, tc.ok)
			}
			if tc.ok && string(d) != tc.in {
				t.Errorf("ParseDigest(%q): got %q, want the input back", tc.in, d)
			}
			if !tc.ok {
				if !errors.Is(err, ErrDigestInvalid) {
					t.Errorf("ParseDigest(%q): got %v, want an ErrDigestInvalid", tc.in, err)
				}
				if d != "" {
					t.Errorf("ParseDigest(%q): got %q with an error, want empty", tc.in, d)
				}
			}
		})
	}
}

func TestIsDigest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"latest", false},
		{"", false},
		{"v1.0", false},
		{"sha256:" + hex64, true},
		{"sha256:bad", true}, // shaped like a digest; ParseDigest rejects it
		{":", true},
	} {
		if got := IsDigest(tc.in); got != tc.want {
			t.Errorf("IsDigest(%q): got %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestDigester(t *testing.T) {
	t.Parallel()
	body := []byte(`{"schemaVersion":2}`)
	if got, want := Digester("", body), digest.SHA256.FromBytes(body); got != want {
		t.Errorf("Digester(\"\"): got %s, want %s", got, want)
	}
	if got, want := Digester("sha512:"+digest.Digest(hex128), body), digest.SHA512.FromBytes(body); got != want {
		t.Errorf("Digester(sha512): got %s, want %s", got, want)
	}
}

// FuzzParseDigest checks that ParseDigest accepts only well-formed sha256
// and sha512 digests and returns them unchanged.
func FuzzParseDigest(f *testing.F) {
	for _, tc := range digestCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDigest(s)
		if want := digestGrammar.MatchString(s); (err == nil) != want {
			t.Fatalf("ParseDigest(%q): got err %v, grammar accepts: %v", s, err, want)
		}
		if err != nil {
			if !errors.Is(err, ErrDigestInvalid) {
				t.Fatalf("ParseDigest(%q): got %v, want an ErrDigestInvalid", s, err)
			}
			return
		}
		if string(d) != s || !IsDigest(s) {
			t.Fatalf("ParseDigest(%q): got %q, IsDigest %v", s, d, IsDigest(s))
		}
		if ValidateTag(s) == nil {
			t.Fatalf("digest %q is also a valid tag", s)
		}
	})
}
