package origin

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestAllows(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		home   string
		realms []string
		target string
		want   bool
	}{
		{"same origin", "https://reg.example:5000", nil, "https://reg.example:5000/oauth2/token", true},
		{"default port made explicit", "https://reg.example", nil, "https://reg.example:443/token", true},
		{"host case", "https://Reg.Example", nil, "https://reg.example/token", true},
		{"other port", "https://127.0.0.1:5000", nil, "https://127.0.0.1:5001/token", false},
		{"other loopback host", "http://127.0.0.1:5000", nil, "http://127.0.0.2:5000/token", false},
		{"https to http", "https://reg.example", nil, "http://reg.example:443/token", false},
		{"http to https same host", "http://reg.example", nil, "https://reg.example/token", false},
		{"listed host any port", "https://registry-1.docker.io", []string{"auth.docker.io"}, "https://auth.docker.io/token", true},
		{"listed host:port", "https://reg.example", []string{"auth.example:8443"}, "https://auth.example:8443/token", true},
		{"listed host:port, other port", "https://reg.example", []string{"auth.example:8443"}, "https://auth.example:9443/token", false},
		{"listed host, http while home https", "https://reg.example", []string{"auth.example"}, "http://auth.example/token", false},
		{"listed host, https while home http", "http://reg.example", []string{"auth.example"}, "https://auth.example/token", true},
		{"listed IPv6", "http://[::1]:5000", []string{"[::1]:6000"}, "http://[::1]:6000/token", true},
		{"subdomain is not the host", "https://example.com", nil, "https://auth.example.com/token", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := NewPolicy(mustURL(t, tc.home), tc.realms, "x")
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Allows(mustURL(t, tc.target)); got != tc.want {
				t.Errorf("Allows(%s) from %s with %v: got %v, want %v", tc.target, tc.home, tc.realms, got, tc.want)
			}
		})
	}
}

func TestNewPolicyRefusesURLs(t *testing.T) {
	t.Parallel()
	if _, err := NewPolicy(mustURL(t, "https://a"), []string{"https://auth.example/token"}, "parent.tokenRealmHosts"); err == nil || !strings.Contains(err.Error(), "parent.tokenRealmHosts") {
		t.Fatalf("got %v, want an error naming the setting", err)
	}
}

// TestTransportRefusesBeforeSending runs a real server standing for a
// foreign token realm: a credential-bearing request to it never arrives,
// an anonymous one does.
func TestTransportRefusesBeforeSending(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) }))
	defer sink.Close()
	p, err := NewPolicy(mustURL(t, "http://127.0.0.1:1"), nil, "parent.tokenRealmHosts")
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: p.Transport(nil)}

	req, _ := http.NewRequest(http.MethodGet, sink.URL+"/token?scope=x", nil)
	req.SetBasicAuth("user", "secret")
	_, err = c.Do(req)
	var fe *ForeignError
	if !errors.Is(err, ErrForeign) || !errors.As(err, &fe) {
		t.Fatalf("got %v, want ErrForeign", err)
	}
	if msg := fe.Error(); !strings.Contains(msg, sink.URL+"/token") || !strings.Contains(msg, "parent.tokenRealmHosts") || strings.Contains(msg, "scope=") {
		t.Errorf("message %q: want the realm without its query and the setting", err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("sink got %d requests, want 0", n)
	}

	resp, err := c.Get(sink.URL + "/anonymous")
	if err != nil {
		t.Fatalf("anonymous request: %v", err)
	}
	resp.Body.Close()
	if n := hits.Load(); n != 1 {
		t.Fatalf("sink got %d requests, want the anonymous one", n)
	}
}

func TestBearerRealm(t *testing.T) {
	t.Parallel()
	cases := []struct{ header, want string }{
		{`Bearer realm="https://auth.example/token",service="reg"`, "https://auth.example/token"},
		{`bearer service="reg", realm="https://a/t"`, "https://a/t"},
		{`Bearer realm=https://a/t,service=reg`, "https://a/t"},
		{`Bearer realm="https://a/t\"x"`, `https://a/t"x`},
		{`Basic realm="outpost"`, ""},
		{`Bearer realm="unterminated`, ""},
		{`Bearer`, ""},
		{``, ""},
	}
	for _, tc := range cases {
		if got := BearerRealm(tc.header); got != tc.want {
			t.Errorf("BearerRealm(%q): got %q, want %q", tc.header, got, tc.want)
		}
	}
}

// FuzzBearerRealm: any header parses without panicking, and a realm
// written as a quoted string comes back unchanged.
func FuzzBearerRealm(f *testing.F) {
	f.Add(`Bearer realm="https://auth.example/token",service="reg"`, "https://x/y")
	f.Add(`Bearer service=a,realm=b`, `a"b\c`)
	f.Fuzz(func(t *testing.T, header, realm string) {
		_ = BearerRealm(header)
		if strings.ContainsAny(realm, "\x00\r\n") {
			return
		}
		q := strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(realm)
		h := `Bearer service="s",realm="` + q + `",scope="x"`
		if got := BearerRealm(h); got != realm {
			t.Fatalf("BearerRealm(%q): got %q, want %q", h, got, realm)
		}
	})
}
