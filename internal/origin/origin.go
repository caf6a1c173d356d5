// Package origin decides where credentials may be sent: a parent's (or any
// remote registry's) own origin — scheme, host and port — and the token
// realm hosts an operator listed explicitly. A transport wrapper refuses
// every request that carries an Authorization header to any other origin,
// before a byte is sent, so a hostile or misconfigured registry cannot
// collect a password by naming a foreign Bearer realm or by redirecting.
package origin

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// ErrForeign marks a request refused because it would carry credentials to
// an origin that is neither the remote's own nor a listed realm host.
var ErrForeign = errors.New("credentials refused for a foreign origin")

// Origin is a canonical scheme://host:port (default ports made explicit,
// host lower-cased).
type Origin struct {
	Scheme string
	Host   string
	Port   string
}

// Of returns the origin of u.
func Of(u *url.URL) Origin {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "https":
			port = "443"
		case "http":
			port = "80"
		}
	}
	return Origin{Scheme: scheme, Host: strings.ToLower(u.Hostname()), Port: port}
}

// String is scheme://host:port.
func (o Origin) String() string {
	return o.Scheme + "://" + net.JoinHostPort(o.Host, o.Port)
}

// Policy is where credentials for one remote may go.
type Policy struct {
	// Home is the remote's own origin.
	Home Origin
	// RealmHosts are the extra hosts ("host" for any port, or
	// "host:port") that may receive the credentials as token realms.
	RealmHosts []string
	// Setting names the configuration that lists realm hosts, for error
	// messages (for example "parent.tokenRealmHosts (--parent-token-realm-host)").
	Setting string
	// Challenges, when set, also checks the realm of every Bearer
	// challenge the remote answers with: a realm the policy does not
	// allow fails the request at once with a *ForeignError, so the client
	// never goes on to ask it for a token. Set it when credentials are
	// configured; an anonymous client may follow any realm.
	Challenges bool
}

// NewPolicy returns the policy for the remote at base, checking the
// realm host entries.
func NewPolicy(base *url.URL, realmHosts []string, setting string) (Policy, error) {
	p := Policy{Home: Of(base), Setting: setting}
	for _, h := range realmHosts {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" {
			continue
		}
		if strings.Contains(h, "/") {
			return Policy{}, fmt.Errorf("%s: %q: want host or host:port, not a URL", setting, h)
		}
		p.RealmHosts = append(p.RealmHosts, h)
	}
	return p, nil
}

// Allows reports whether credentials may be sent to u: u is on the home
// origin, or its host (and port, when the entry names one) is a listed
// realm host reached over the home scheme or over https.
func (p Policy) Allows(u *url.URL) bool {
	o := Of(u)
	if o == p.Home {
		return true
	}
	if o.Scheme != p.Home.Scheme && o.Scheme != "https" {
		return false
	}
	for _, h := range p.RealmHosts {
		if h == o.Host || h == net.JoinHostPort(o.Host, o.Port) || h == "["+o.Host+"]" {
			return true
		}
	}
	return false
}

// ForeignError is a refused request: the URL it would have gone to, and
// how to allow it.
type ForeignError struct {
	URL     string
	Home    Origin
	Setting string
	// Realm is set when URL is a Bearer token realm the remote named.
	Realm bool
}

func (e *ForeignError) Error() string {
	what := ""
	if e.Realm {
		what = "token realm "
	}
	msg := fmt.Sprintf("refusing to send credentials to %s%s: not on %s", what, e.URL, e.Home)
	if e.Setting != "" {
		msg += "; if it is the registry's token service, list its host in " + e.Setting
	}
	return msg
}

// Unwrap makes errors.Is(err, ErrForeign) true.
func (e *ForeignError) Unwrap() error { return ErrForeign }

// Transport wraps next (http.DefaultTransport when nil) so that a request
// with an Authorization header to an origin the policy does not allow
// fails with a *ForeignError instead of being sent.
func (p Policy) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &guard{policy: p, next: next}
}

type guard struct {
	policy Policy
	next   http.RoundTripper
}

func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Authorization") != "" || req.URL.User != nil {
		if !g.policy.Allows(req.URL) {
			if req.Body != nil {
				_ = req.Body.Close()
			}
			u := *req.URL
			u.User, u.RawQuery = nil, ""
			return nil, &ForeignError{URL: u.String(), Home: g.policy.Home, Setting: g.policy.Setting}
		}
	}
	resp, err := g.next.RoundTrip(req)
	if err != nil || !g.policy.Challenges || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	for _, h := range resp.Header.Values("WWW-Authenticate") {
		realm := BearerRealm(h)
		if realm == "" {
			continue
		}
		u, perr := url.Parse(realm)
		if perr == nil && g.policy.Allows(u) {
			continue
		}
		_ = resp.Body.Close()
		shown := realm
		if perr == nil {
			u.User, u.RawQuery = nil, ""
			shown = u.String()
		}
		return nil, &ForeignError{URL: shown, Home: g.policy.Home, Setting: g.policy.Setting, Realm: true}
	}
	return resp, nil
}

// BearerRealm returns the realm parameter of a Bearer challenge
// (RFC 7235 §4.1, RFC 6750 §3: `Bearer realm="…",service="…"`), or ""
// when header is another scheme or names no realm.
func BearerRealm(header string) string {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(header), " ")
	if !strings.EqualFold(scheme, "bearer") {
		return ""
	}
	for rest != "" {
		rest = strings.TrimLeft(rest, " \t,")
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return ""
		}
		key := strings.TrimSpace(rest[:eq])
		rest = strings.TrimLeft(rest[eq+1:], " \t")
		var val string
		if strings.HasPrefix(rest, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(rest) && rest[i] != '"'; i++ {
				if rest[i] == '\\' && i+1 < len(rest) {
					i++
				}
				b.WriteByte(rest[i])
			}
			if i >= len(rest) {
				return "" // unterminated quoted string
			}
			val, rest = b.String(), rest[i+1:]
		} else {
			end := strings.IndexAny(rest, ", \t")
			if end < 0 {
				end = len(rest)
			}
			val, rest = rest[:end], rest[end:]
		}
		if strings.EqualFold(key, "realm") {
			return val
		}
	}
	return ""
}
