// Package syncer copies content from a parent registry into the local
// store: descriptor graphs (indexes, manifests, blobs, referrers) staged
// and verified before a tag is published, on a schedule, incrementally
// from an Outpost parent's change feed, and on demand for pull-through.
package syncer

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/outpost-registry/outpost/internal/graph"
	"github.com/outpost-registry/outpost/internal/oci"
	"github.com/outpost-registry/outpost/internal/origin"
	"github.com/outpost-registry/outpost/internal/pki"
)

// Errors of parent requests.
var (
	ErrNotFound   error = &parentError{"not found on the parent", graph.ErrNotFound}
	ErrDigest     error = &parentError{"digest mismatch from the parent", graph.ErrDigest}
	ErrConnection error = &parentError{"parent unreachable", nil}
)

// parentError is the type of the sentinel errors of parent requests. Its
// NotFound and Unavailable methods let a caller that may not import
// syncer (the registry API, answering a pull-through) tell a parent
// without the content from a parent that failed, through errors.As.
type parentError struct {
	msg string
	// base is the graph copy's sentinel this error is a case of.
	base error
}

func (e *parentError) Error() string { return e.msg }

func (e *parentError) Unwrap() error { return e.base }

// NotFound reports the parent answering that it does not have the content.
func (e *parentError) NotFound() bool { return error(e) == ErrNotFound }

// Unavailable reports a parent that could not be reached or did not answer
// in time.
func (e *parentError) Unavailable() bool { return error(e) == ErrConnection }

// StatusError is an unexpected HTTP answer from the parent.
type StatusError struct {
	Method, URL string
	Status      int
	RetryAfter  time.Duration
	Body        string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: %d %s %s", e.Method, e.URL, e.Status, http.StatusText(e.Status), e.Body)
}

// Temporary reports errors worth retrying: throttling, server errors,
// connection failures, interrupted transfers and digest mismatches (a
// corrupted transfer).
func Temporary(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status == http.StatusTooManyRequests || se.Status >= 500
	}
	return errors.Is(err, ErrConnection) || errors.Is(err, graph.ErrDigest) || errors.Is(err, graph.ErrInterrupted) || errors.Is(err, io.ErrUnexpectedEOF)
}

// ParentOptions configure the connection to a parent.
type ParentOptions struct {
	URL      string
	Username string
	Password string
	// CAFile adds a CA to the system roots for an HTTPS parent.
	CAFile string
	// Timeout bounds connecting and waiting for response headers.
	Timeout time.Duration
	// Metrics, when set, is told how long each request took to answer.
	Metrics RequestObserver
	// TokenRealmHosts are the hosts ("host" or "host:port") besides the
	// parent's own origin that may receive the credentials as a Bearer
	// token realm (parent.tokenRealmHosts).
	TokenRealmHosts []string
}

// RealmSetting names the configuration that lists extra token realm
// hosts, for error messages.
const RealmSetting = "parent.tokenRealmHosts (--parent-token-realm-host)"

// RequestObserver receives the latency of parent requests for metrics:
// the time to the response headers, with the status code (0 when no
// answer came).
type RequestObserver interface {
	ParentRequest(method string, code int, d time.Duration)
}

// Parent is a client of the parent registry: the OCI API with Docker token
// or Basic auth, and (for an Outpost parent) its control API.
type Parent struct {
	base    *url.URL
	client  *auth.Client
	metrics RequestObserver
}

// NewParent builds a parent client. Credentials are sent only to the
// parent's own origin (scheme, host and port) — token realms included —
// and to the realm hosts listed in TokenRealmHosts; a request that would
// carry them anywhere else fails with origin.ErrForeign before it is sent.
// HTTPS certificates are always verified.
func NewParent(o ParentOptions) (*Parent, error) {
	u, err := url.Parse(strings.TrimRight(o.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		shown := "(not a URL)"
		if err == nil {
			shown = u.Redacted()
		}
		return nil, fmt.Errorf("parent URL %q: want http(s)://host[:port]", shown)
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: o.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   o.Timeout,
		ResponseHeaderTimeout: 3 * o.Timeout,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
	}
	if o.CAFile != "" {
		pool, err := pki.RootsWithCA(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("parent: %w", err)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	policy, err := origin.NewPolicy(u, o.TokenRealmHosts, RealmSetting)
	if err != nil {
		return nil, err
	}
	policy.Challenges = o.Username != "" || o.Password != ""
	host := u.Host
	cred := auth.Credential{Username: o.Username, Password: o.Password}
	// Parents on this host (nested test setups, a gateway on the same
	// machine) put their token realm on loopback, which oras blocks by
	// default.
	blocked := slices.DeleteFunc(auth.DefaultBlockedRealmPrefixes(), func(p netip.Prefix) bool {
		return p.Contains(netip.MustParseAddr("127.0.0.1")) || p.Contains(netip.IPv6Loopback())
	})
	c := &auth.Client{
		Client: &http.Client{Transport: policy.Transport(tr)},
		Cache:  auth.NewCache(),
		Credential: func(_ context.Context, hostport string) (auth.Credential, error) {
			if hostport != host {
				return auth.EmptyCredential, nil
			}
			return cred, nil
		},
		BlockedRealmPrefixes: blocked,
	}
	c.SetUserAgent("outpost-syncer")
	return &Parent{base: u, client: c, metrics: o.Metrics}, nil
}

// Host is the parent's host:port.
func (p *Parent) Host() string { return p.base.Host }

// URL is the parent's base URL.
func (p *Parent) URL() string { return p.base.String() }

func (p *Parent) do(ctx context.Context, method, path string, hdr http.Header, body []byte, repo string, actions ...string) (*http.Response, error) {
	if repo != "" {
		ctx = auth.AppendScopes(ctx, auth.ScopeRepository(repo, actions...))
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.base.String()+path, rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := p.send(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, origin.ErrForeign) {
			return nil, fmt.Errorf("%s %s: %w", method, path, foreignCause(err))
		}
		return nil, fmt.Errorf("%w: %s %s: %w", ErrConnection, method, path, err)
	}
	return resp, nil
}

// foreignCause digs the *origin.ForeignError out of the layers of oras
// and net/http wrapping, so that the message names the realm and the
// setting without repeating the request.
func foreignCause(err error) error {
	var fe *origin.ForeignError
	if errors.As(err, &fe) {
		return fe
	}
	return err
}

// send runs req, telling the observer how long the answer took. Under
// WithAnswerTimeout, a parent silent for that long fails with ErrNoAnswer.
func (p *Parent) send(req *http.Request) (*http.Response, error) {
	req, w := watch(req)
	start := time.Now()
	resp, err := p.client.Do(req)
	if p.metrics != nil {
		code := 0
		if err == nil {
			code = resp.StatusCode
		}
		p.metrics.ParentRequest(req.Method, code, time.Since(start))
	}
	if w != nil {
		if err != nil {
			err = w.explain(err)
			w.stop()
			return nil, err
		}
		resp.Body = w.body(resp.Body)
	}
	return resp, err
}

// check turns a non-2xx answer into an error and closes its body.
func check(resp *http.Response, method, path string, ok ...int) error {
	if slices.Contains(ok, resp.StatusCode) || (len(ok) == 0 && resp.StatusCode/100 == 2) {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %s %s", ErrNotFound, method, path)
	}
	se := &StatusError{Method: method, URL: path, Status: resp.StatusCode, Body: strings.TrimSpace(string(b))}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		if secs, err := strconv.Atoi(ra); err == nil {
			se.RetryAfter = time.Duration(secs) * time.Second
		}
	}
	return se
}

// Manifest fetches a manifest and verifies its digest: against ref when it
// is a digest, else against the Docker-Content-Digest header when sent.
func (p *Parent) Manifest(ctx context.Context, repo, ref string, maxBytes int64) ([]byte, string, digest.Digest, error) {
	path := "/v2/" + repo + "/manifests/" + ref
	resp, err := p.do(ctx, http.MethodGet, path, http.Header{"Accept": {oci.ManifestAccept}}, nil, repo, "pull")
	if err != nil {
		return nil, "", "", err
	}
	if err := check(resp, http.MethodGet, path); err != nil {
		return nil, "", "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBytes+1))
	if err != nil {
		return nil, "", "", fmt.Errorf("%w: read manifest %s:%s: %w", ErrConnection, repo, ref, err)
	}
	if int64(len(body)) > maxBytes {
		return nil, "", "", fmt.Errorf("manifest %s:%s is larger than %d bytes", repo, ref, maxBytes)
	}
	want := digest.Digest("")
	if oci.IsDigest(ref) {
		want = digest.Digest(ref)
	} else if h := resp.Header.Get("Docker-Content-Digest"); h != "" {
		want = digest.Digest(h)
	}
	if want != "" && want.Validate() != nil {
		return nil, "", "", fmt.Errorf("%w: invalid digest %q", ErrDigest, want)
	}
	got := oci.Digester(want, body)
	if want != "" && got != want {
		return nil, "", "", fmt.Errorf("%w: manifest %s:%s is %s, expected %s", ErrDigest, repo, ref, got, want)
	}
	mt := resp.Header.Get("Content-Type")
	return body, mt, got, nil
}

// Resolve returns the digest a tag points at, with a HEAD request.
func (p *Parent) Resolve(ctx context.Context, repo, tag string) (digest.Digest, error) {
	path := "/v2/" + repo + "/manifests/" + tag
	resp, err := p.do(ctx, http.MethodHead, path, http.Header{"Accept": {oci.ManifestAccept}}, nil, repo, "pull")
	if err != nil {
		return "", err
	}
	if err := check(resp, http.MethodHead, path); err != nil {
		return "", err
	}
	resp.Body.Close()
	d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
	if err != nil {
		return "", fmt.Errorf("HEAD %s: no valid Docker-Content-Digest", path)
	}
	return d, nil
}

// list follows Link pagination of a JSON listing, bounded to 10,000 pages.
func (p *Parent) list(ctx context.Context, path, repo string, into func([]byte) error) error {
	for page := 0; path != "" && page < 10000; page++ {
		resp, err := p.do(ctx, http.MethodGet, path, nil, nil, repo, "pull")
		if err != nil {
			return err
		}
		if err := check(resp, http.MethodGet, path); err != nil {
			return err
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("%w: read %s: %w", ErrConnection, path, err)
		}
		if err := into(b); err != nil {
			return fmt.Errorf("decode %s: %w", path, err)
		}
		path = nextLink(resp.Header.Get("Link"))
	}
	return nil
}

// nextLink extracts the path of a Link: <…>; rel="next" header.
func nextLink(h string) string {
	if h == "" || !strings.Contains(h, `rel="next"`) {
		return ""
	}
	start, end := strings.IndexByte(h, '<'), strings.IndexByte(h, '>')
	if start < 0 || end < start {
		return ""
	}
	u, err := url.Parse(h[start+1 : end])
	if err != nil {
		return ""
	}
	return u.RequestURI()
}

// Tags lists every tag of a repository.
func (p *Parent) Tags(ctx context.Context, repo string) ([]string, error) {
	var out []string
	err := p.list(ctx, "/v2/"+repo+"/tags/list?n=1000", repo, func(b []byte) error {
		var v struct {
			Tags []string `json:"tags"`
		}
		err := json.Unmarshal(b, &v)
		out = append(out, v.Tags...)
		return err
	})
	return out, err
}

// Catalog lists the repositories the credential may see.
func (p *Parent) Catalog(ctx context.Context) ([]string, error) {
	var out []string
	ctx = auth.AppendScopes(ctx, "registry:catalog:*")
	err := p.list(ctx, "/v2/_catalog?n=1000", "", func(b []byte) error {
		var v struct {
			Repositories []string `json:"repositories"`
		}
		err := json.Unmarshal(b, &v)
		out = append(out, v.Repositories...)
		return err
	})
	return out, err
}

// Referrers lists the manifests referring to d; a parent without the
// referrers API has none.
func (p *Parent) Referrers(ctx context.Context, repo string, d digest.Digest) ([]v1.Descriptor, error) {
	var idx v1.Index
	err := p.list(ctx, "/v2/"+repo+"/referrers/"+string(d), repo, func(b []byte) error {
		var page v1.Index
		err := json.Unmarshal(b, &page)
		idx.Manifests = append(idx.Manifests, page.Manifests...)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return idx.Manifests, err
}

// Blob opens a blob from offset (with a Range request when offset > 0).
// It returns the body and whether the parent honoured the range.
func (p *Parent) Blob(ctx context.Context, repo string, d digest.Digest, offset int64) (io.ReadCloser, bool, error) {
	path := "/v2/" + repo + "/blobs/" + string(d)
	hdr := http.Header{}
	if offset > 0 {
		hdr.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, err := p.do(ctx, http.MethodGet, path, hdr, nil, repo, "pull")
	if err != nil {
		return nil, false, err
	}
	if err := check(resp, http.MethodGet, path, http.StatusOK, http.StatusPartialContent); err != nil {
		return nil, false, err
	}
	if resp.StatusCode == http.StatusPartialContent {
		// A 206 must start where the download stopped; anything else
		// would splice the wrong bytes in (caught only by the digest at
		// the end, after a wasted transfer).
		want := "bytes " + strconv.FormatInt(offset, 10) + "-"
		if cr := resp.Header.Get("Content-Range"); !strings.HasPrefix(cr, want) {
			_ = resp.Body.Close()
			return nil, false, fmt.Errorf("%w: GET %s: Content-Range %q does not start at offset %d", ErrConnection, path, cr, offset)
		}
	}
	return resp.Body, resp.StatusCode == http.StatusPartialContent, nil
}

// JSON calls the parent's control API.
func (p *Parent) JSON(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("encode %s: %w", path, err)
		}
	}
	resp, err := p.do(ctx, method, path, http.Header{"Accept": {"application/json"}}, body, "")
	if err != nil {
		return err
	}
	if err := check(resp, method, path); err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}
