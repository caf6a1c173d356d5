package server_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/registryapi"
	"github.com/outpost-registry/outpost/internal/server"
)

// The authorization tests run the whole server in process. Requests go
// straight to the root handler, each from its own client address, so that
// the failed-login limiter (which counts per address and per name) only
// comes into play in the tests written for it.

const (
	azHost    = "outpost.test"
	azAdminPW = "admin-password-for-authz-tests"
	azPW      = "token-password-one"
	azPW2     = "token-password-two"
	azRepo    = "matrix/repo"
)

// azRealm is the challenge every 401 of the registry API starts with.
const azRealm = `Bearer realm="http://` + azHost + `/oauth2/token",service="` + azHost + `"`

var azHashes sync.Map // password -> hash

// azHash hashes a password at bcrypt's minimum cost, once per password.
// The stored hash sets the cost of every verification, and under the race
// detector the default cost takes over a second.
func azHash(t testing.TB, pw string) string {
	t.Helper()
	if h, ok := azHashes.Load(pw); ok {
		return h.(string)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := azHashes.LoadOrStore(pw, string(h))
	return v.(string)
}

// azSeed writes identity data into dir before a server opens it: the admin
// password, when none is set yet, and whatever fn adds.
func azSeed(t testing.TB, dir string, fn func(tx *auth.Tx) error) {
	t.Helper()
	st, err := auth.OpenStore(filepath.Join(dir, "identity.db"))
	if err != nil {
		t.Fatal(err)
	}
	adminHash := ""
	if st.AdminHash() == "" {
		adminHash = azHash(t, azAdminPW)
	}
	err = st.Update(func(tx *auth.Tx) error {
		if adminHash != "" {
			tx.SetAdminHash(adminHash)
		}
		if fn != nil {
			return fn(tx)
		}
		return nil
	})
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("seed identity store: %v", err)
	}
}

// azToken builds an enabled token whose password1 is azPW.
func azToken(t testing.TB, name, scopeMap string) *auth.Token {
	return &auth.Token{Name: name, ScopeMap: scopeMap, Status: auth.StatusEnabled,
		Passwords: []auth.Password{{Name: auth.Password1, Hash: azHash(t, azPW), Created: time.Now().UTC()}}}
}

type azServer struct {
	t    testing.TB
	dir  string
	cfg  config.Config
	srv  *server.Server
	peer atomic.Uint32
	// adminPW is the admin password given at start (empty: the seeded hash).
	adminPW string
}

// azStart seeds dir and starts a server on it with plain HTTP.
func azStart(t testing.TB, seed func(tx *auth.Tx) error, edit func(*config.Config)) *azServer {
	t.Helper()
	s := &azServer{t: t, dir: t.TempDir(), cfg: config.Default()}
	s.cfg.Data = s.dir
	s.cfg.TLS.Mode = config.TLSOff
	if edit != nil {
		edit(&s.cfg)
	}
	if s.cfg.Storage.Metadata.Type == config.MetadataPostgres {
		// The identity store lives in the database, not in identity.db:
		// the admin password is given at start, as to every replica.
		if seed != nil {
			t.Fatal("azStart: seeding identity records is for the embedded store")
		}
		s.adminPW = azAdminPW
	} else {
		azSeed(t, s.dir, seed)
	}
	s.open()
	t.Cleanup(func() {
		if s.srv != nil {
			_ = s.srv.Close()
		}
	})
	return s
}

func (s *azServer) open() {
	s.t.Helper()
	srv, err := server.New(s.cfg, slog.New(slog.DiscardHandler), "test", s.adminPW)
	if err != nil {
		s.t.Fatalf("server.New: %v", err)
	}
	s.srv = srv
}

// restart stops the server, changes its identity data and starts it again
// on the same data directory (and so the same token signing key).
func (s *azServer) restart(seed func(tx *auth.Tx) error) {
	s.t.Helper()
	if err := s.srv.Close(); err != nil {
		s.t.Fatal(err)
	}
	s.srv = nil
	azSeed(s.t, s.dir, seed)
	s.open()
}

// azCred is what a request presents: nothing, Basic credentials, a
// registry token, or a raw Authorization header.
type azCred struct {
	user, pw string
	bearer   string
	raw      string
}

func azBasic(user, pw string) azCred { return azCred{user: user, pw: pw} }
func azBearer(tok string) azCred     { return azCred{bearer: tok} }

func (c azCred) apply(r *http.Request) {
	switch {
	case c.raw != "":
		r.Header.Set("Authorization", c.raw)
	case c.bearer != "":
		r.Header.Set("Authorization", "Bearer "+c.bearer)
	case c.user != "":
		r.SetBasicAuth(c.user, c.pw)
	}
}

// do serves one request from a client address used by no other request.
func (s *azServer) do(method, path string, hdr http.Header, body []byte, cred azCred) *httptest.ResponseRecorder {
	n := s.peer.Add(1)
	return s.doFrom(fmt.Sprintf("10.%d.%d.%d:41000", byte(n>>16), byte(n>>8), byte(n)), method, path, hdr, body, cred)
}

func (s *azServer) doFrom(peer, method, path string, hdr http.Header, body []byte, cred azCred) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://"+azHost+path, bytes.NewReader(body))
	req.RemoteAddr = peer
	for k, v := range hdr {
		req.Header[k] = v
	}
	cred.apply(req)
	rec := httptest.NewRecorder()
	s.srv.Handler().ServeHTTP(rec, req)
	return rec
}

// token obtains a registry token from /oauth2/token.
func (s *azServer) token(t testing.TB, cred azCred, scopes ...string) string {
	t.Helper()
	q := url.Values{"service": {azHost}, "scope": scopes}
	rec := s.do(http.MethodGet, "/oauth2/token?"+q.Encode(), nil, nil, cred)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /oauth2/token as %q: got %d %s, want 200", cred.user, rec.Code, rec.Body)
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Token == "" {
		t.Fatalf("GET /oauth2/token: body %s: %v", rec.Body, err)
	}
	return out.Token
}

// azImage is a small image: one layer and a config, with its manifest.
type azImage struct {
	config, layer, manifest []byte
}

func newAzImage(repo string) azImage {
	return buildAzImage([]byte(`{"architecture":"amd64","os":"linux"}`), []byte("layer of "+repo))
}

// buildAzImage returns the image of config and layer.
func buildAzImage(config, layer []byte) azImage {
	img := azImage{config: config, layer: layer}
	desc := func(mt string, b []byte) map[string]any {
		return map[string]any{"mediaType": mt, "digest": azDigest(b), "size": len(b)}
	}
	img.manifest, _ = json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        desc("application/vnd.oci.image.config.v1+json", img.config),
		"layers":        []any{desc("application/vnd.oci.image.layer.v1.tar", img.layer)},
	})
	return img
}

func azDigest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// push uploads the image into repo as tag, as the admin.
func (s *azServer) push(t testing.TB, repo, tag string) azImage {
	t.Helper()
	img := newAzImage(repo)
	s.pushAs(t, azBasic(auth.AdminUser, azAdminPW), repo, tag, img)
	return img
}

// pushAs pushes img's blobs and manifest (as repo:tag) with cred.
func (s *azServer) pushAs(t testing.TB, cred azCred, repo, tag string, img azImage) {
	t.Helper()
	for _, b := range [][]byte{img.config, img.layer} {
		rec := s.do(http.MethodPost, "/v2/"+repo+"/blobs/uploads/?digest="+azDigest(b), nil, b, cred)
		if rec.Code != http.StatusCreated {
			t.Fatalf("push blob to %s: got %d %s, want 201", repo, rec.Code, rec.Body)
		}
	}
	hdr := http.Header{"Content-Type": {"application/vnd.oci.image.manifest.v1+json"}}
	rec := s.do(http.MethodPut, "/v2/"+repo+"/manifests/"+tag, hdr, img.manifest, cred)
	if rec.Code != http.StatusCreated {
		t.Fatalf("push manifest %s:%s: got %d %s, want 201", repo, tag, rec.Code, rec.Body)
	}
}

// azCheckOCIError checks a registry API error: its status, its JSON body
// (not for HEAD) and its code.
func azCheckOCIError(t testing.TB, rec *httptest.ResponseRecorder, method string, status int, code string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status: got %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type: got %q, want application/json", ct)
	}
	if method == http.MethodHead {
		return
	}
	var body struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body is not OCI error JSON: %v: %s", err, rec.Body)
	}
	if len(body.Errors) != 1 || body.Errors[0].Code != code || body.Errors[0].Message == "" {
		t.Fatalf("body: got %s, want one error with code %s and a message", rec.Body, code)
	}
}

// azCheckAllowed checks that a request got past authorization: it got the
// answer the admin got for the same request (ep.admin), such as 404 for a
// missing blob, and not merely some other 4xx.
func azCheckAllowed(t testing.TB, ep azEndpoint, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code != ep.admin {
		t.Fatalf("got %d %s, want %d, what the admin gets (the request authorized)", rec.Code, rec.Body, ep.admin)
	}
}

// azNeed is what a registry endpoint requires: a scope-map action and the
// Docker token action (scope) a registry token must carry. An empty action
// means any authenticated caller; catalog filters instead of refusing.
type azNeed struct {
	action  auth.Action
	scope   string
	catalog bool
}

var (
	azRead   = azNeed{action: auth.ContentRead, scope: "pull"}
	azWrite  = azNeed{action: auth.ContentWrite, scope: "push"}
	azDelete = azNeed{action: auth.ContentDelete, scope: "delete"}
	azList   = azNeed{action: auth.MetadataRead, scope: "pull"}
)

// azDocumented is the documented authorization of every endpoint and
// method the router serves (docs/operations.md, internal/server/authz.go).
var azDocumented = map[registryapi.Kind]map[string]azNeed{
	registryapi.KindBase:        {http.MethodGet: {}, http.MethodHead: {}},
	registryapi.KindCatalog:     {http.MethodGet: {action: auth.MetadataRead, catalog: true}},
	registryapi.KindTags:        {http.MethodGet: azList},
	registryapi.KindManifest:    {http.MethodGet: azRead, http.MethodHead: azRead, http.MethodPut: azWrite, http.MethodDelete: azDelete},
	registryapi.KindBlob:        {http.MethodGet: azRead, http.MethodHead: azRead, http.MethodDelete: azDelete},
	registryapi.KindUploadStart: {http.MethodPost: azWrite},
	registryapi.KindUpload:      {http.MethodGet: azWrite, http.MethodPatch: azWrite, http.MethodPut: azWrite, http.MethodDelete: azWrite},
	registryapi.KindReferrers:   {http.MethodGet: azRead},
}

var azMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// azEndpoint is one routed method of one endpoint, with a request that
// exercises it.
type azEndpoint struct {
	kind   registryapi.Kind
	method string
	path   string
	body   []byte
	need   azNeed
	// admin is the status the admin gets: what any authorized caller
	// gets. It is never a refusal or a server error.
	admin int
}

func (e azEndpoint) String() string { return e.kind.String() + "_" + e.method }

// azPath returns a request path for an endpoint kind. Reads address the
// pushed image; writes and deletes address content that does not exist,
// so that the matrix never changes what other cases read.
func azPath(k registryapi.Kind, method string, img azImage) (string, bool) {
	read := method == http.MethodGet || method == http.MethodHead
	absent := azDigest([]byte("absent"))
	switch k {
	case registryapi.KindBase:
		return "/v2/", true
	case registryapi.KindCatalog:
		return "/v2/_catalog", true
	case registryapi.KindTags:
		return "/v2/" + azRepo + "/tags/list", true
	case registryapi.KindManifest:
		if read {
			return "/v2/" + azRepo + "/manifests/v1", true
		}
		return "/v2/" + azRepo + "/manifests/absent", true
	case registryapi.KindBlob:
		if read {
			return "/v2/" + azRepo + "/blobs/" + azDigest(img.layer), true
		}
		return "/v2/" + azRepo + "/blobs/" + absent, true
	case registryapi.KindUploadStart:
		return "/v2/" + azRepo + "/blobs/uploads/", true
	case registryapi.KindUpload:
		return "/v2/" + azRepo + "/blobs/uploads/6f1c1d57-4c0e-4d64-9a39-5d2d0a1b3c4e", true
	case registryapi.KindReferrers:
		return "/v2/" + azRepo + "/referrers/" + azDigest(img.manifest), true
	}
	return "", false
}

// azEndpoints enumerates the router's endpoint kinds, finds the methods
// each serves by asking the server as the admin (an unserved method is
// 405 UNSUPPORTED), and checks them against azDocumented.
func azEndpoints(t *testing.T, s *azServer, img azImage) []azEndpoint {
	t.Helper()
	admin := azBasic(auth.AdminUser, azAdminPW)
	var out []azEndpoint
	for k := registryapi.Kind(1); k.String() != "unknown"; k++ {
		doc, ok := azDocumented[k]
		if !ok {
			t.Errorf("endpoint kind %s has no documented authorization: add it to azDocumented", k)
			continue
		}
		for _, m := range azMethods {
			path, ok := azPath(k, m, img)
			if !ok {
				t.Fatalf("endpoint kind %s has no sample path: add it to azPath", k)
			}
			if rt, err := registryapi.ParseRoute(strings.SplitN(path, "?", 2)[0]); err != nil || rt.Kind != k {
				t.Fatalf("ParseRoute(%q): got %v, %v; want kind %s", path, rt.Kind, err, k)
			}
			var body []byte
			switch m {
			case http.MethodPut:
				body = []byte("{}")
			case http.MethodPatch:
				body = []byte("chunk")
			}
			rec := s.do(m, path, nil, body, admin)
			routed := rec.Code != http.StatusMethodNotAllowed
			need, documented := doc[m]
			switch {
			case routed && !documented:
				t.Errorf("%s %s (%s) is served (%d) but its authorization is not documented", m, path, k, rec.Code)
			case !routed && documented:
				t.Errorf("%s %s (%s): got 405, want it served", m, path, k)
			case routed && (rec.Code == http.StatusUnauthorized || rec.Code == http.StatusForbidden || rec.Code == http.StatusTooManyRequests || rec.Code >= 500):
				t.Errorf("%s %s (%s) as the admin: got %d %s, want it authorized and no server error", m, path, k, rec.Code, rec.Body)
			case routed:
				out = append(out, azEndpoint{kind: k, method: m, path: path, body: body, need: need, admin: rec.Code})
			}
		}
	}
	return out
}

var azMatrixActions = []auth.Action{auth.ContentRead, auth.ContentWrite, auth.ContentDelete, auth.MetadataRead}

func azSlug(a auth.Action) string { return strings.ReplaceAll(string(a), "/", "-") }

// azMatrixSeed creates, for each action, a token allowed only that action
// on azRepo ("only-…") and one allowed every other action ("lack-…"), and
// two tokens with every right whose credentials are invalidated later.
func azMatrixSeed(t testing.TB) func(tx *auth.Tx) error {
	return func(tx *auth.Tx) error {
		for _, a := range azMatrixActions {
			others := slices.DeleteFunc(slices.Clone(auth.RepositoryActions), func(b auth.Action) bool { return b == a })
			for _, m := range []*auth.ScopeMap{
				{Name: "only-" + azSlug(a) + "-map", Repositories: []auth.RepositoryGrant{{Repository: azRepo, Actions: []auth.Action{a}}}},
				{Name: "lack-" + azSlug(a) + "-map", Repositories: []auth.RepositoryGrant{{Repository: azRepo, Actions: others}}},
			} {
				if err := tx.PutScopeMap(m); err != nil {
					return err
				}
				if err := tx.PutToken(azToken(t, strings.TrimSuffix(m.Name, "-map"), m.Name)); err != nil {
					return err
				}
			}
		}
		for _, n := range []string{"bearer-disabled", "bearer-expired"} {
			if err := tx.PutToken(azToken(t, n, auth.ScopeMapAdmin)); err != nil {
				return err
			}
		}
		return nil
	}
}

// azFailingSeed disables bearer-disabled, expires the password of
// bearer-expired, and adds for each endpoint i tokens with every right
// that are presented with a wrong password, disabled, or expired. Each
// name fails once, below the limiter's threshold.
func azFailingSeed(t testing.TB, n int) func(tx *auth.Tx) error {
	return func(tx *auth.Tx) error {
		past := time.Now().UTC().Add(-time.Hour)
		expire := func(tok *auth.Token) *auth.Token {
			tok.Passwords = slices.Clone(tok.Passwords)
			tok.Passwords[0].Expiry = &past
			return tok
		}
		d, err := tx.Token("bearer-disabled")
		if err != nil {
			return err
		}
		dc := *d
		dc.Status = auth.StatusDisabled
		e, err := tx.Token("bearer-expired")
		if err != nil {
			return err
		}
		ec := *e
		for _, tok := range []*auth.Token{&dc, expire(&ec)} {
			if err := tx.PutToken(tok); err != nil {
				return err
			}
		}
		for i := range n {
			wrong := azToken(t, fmt.Sprintf("wrong-%02d", i), auth.ScopeMapAdmin)
			disabled := azToken(t, fmt.Sprintf("disabled-%02d", i), auth.ScopeMapAdmin)
			disabled.Status = auth.StatusDisabled
			expired := expire(azToken(t, fmt.Sprintf("expired-%02d", i), auth.ScopeMapAdmin))
			for _, tok := range []*auth.Token{wrong, disabled, expired} {
				if err := tx.PutToken(tok); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// The credential kinds of the matrix.
const (
	azNone     = "none"
	azWrong    = "wrong-password"
	azDisabled = "disabled-token"
	azExpired  = "expired-password"
	azLacking  = "token-lacking-action"
	azHolding  = "token-with-action"
	azAdmin    = "admin"
)

var azKinds = []string{azNone, azWrong, azDisabled, azExpired, azLacking, azHolding, azAdmin}

// TestAuthorizationMatrix checks every endpoint and method of the registry
// API against every kind of credential, presented as Basic credentials on
// /v2/ and as registry tokens from /oauth2/token.
func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	s := azStart(t, azMatrixSeed(t), nil)
	img := s.push(t, azRepo, "v1")
	endpoints := azEndpoints(t, s, img)
	if t.Failed() {
		t.FailNow()
	}

	// Registry tokens are obtained while every credential is valid.
	scopes := []string{"repository:" + azRepo + ":pull,push,delete", "registry:catalog:*"}
	bearers := map[string]string{
		azAdmin:    s.token(t, azBasic(auth.AdminUser, azAdminPW), scopes...),
		azDisabled: s.token(t, azBasic("bearer-disabled", azPW), scopes...),
		azExpired:  s.token(t, azBasic("bearer-expired", azPW), scopes...),
	}
	for _, a := range azMatrixActions {
		bearers["only-"+azSlug(a)] = s.token(t, azBasic("only-"+azSlug(a), azPW), scopes...)
		bearers["lack-"+azSlug(a)] = s.token(t, azBasic("lack-"+azSlug(a), azPW), scopes...)
	}
	s.restart(azFailingSeed(t, len(endpoints)))

	for i, ep := range endpoints {
		for _, mode := range []string{"basic", "bearer"} {
			for _, kind := range azKinds {
				if kind == azNone && mode == "bearer" {
					continue // no credential: the same request in both modes
				}
				t.Run(fmt.Sprintf("%s/%s/%s", ep, mode, kind), func(t *testing.T) {
					t.Parallel()
					act := ep.need.action
					if act == "" {
						act = auth.ContentRead // base: any authenticated caller
					}
					var cred azCred
					switch {
					case kind == azNone:
					case mode == "basic" && kind == azWrong:
						cred = azBasic(fmt.Sprintf("wrong-%02d", i), "not-"+azPW)
					case mode == "basic" && kind == azDisabled:
						cred = azBasic(fmt.Sprintf("disabled-%02d", i), azPW)
					case mode == "basic" && kind == azExpired:
						cred = azBasic(fmt.Sprintf("expired-%02d", i), azPW)
					case mode == "basic" && kind == azLacking:
						cred = azBasic("lack-"+azSlug(act), azPW)
					case mode == "basic" && kind == azHolding:
						cred = azBasic("only-"+azSlug(act), azPW)
					case mode == "basic" && kind == azAdmin:
						cred = azBasic(auth.AdminUser, azAdminPW)
					case kind == azWrong:
						// A token the server never issued.
						cred = azBearer("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl")
					case kind == azLacking:
						cred = azBearer(bearers["lack-"+azSlug(act)])
					case kind == azHolding:
						cred = azBearer(bearers["only-"+azSlug(act)])
					default:
						cred = azBearer(bearers[kind])
					}
					rec := s.do(ep.method, ep.path, nil, ep.body, cred)
					azCheckMatrixCase(t, ep, kind, rec)
				})
			}
		}
	}
}

func azCheckMatrixCase(t *testing.T, ep azEndpoint, kind string, rec *httptest.ResponseRecorder) {
	t.Helper()
	switch kind {
	case azNone:
		azCheckOCIError(t, rec, ep.method, http.StatusUnauthorized, "UNAUTHORIZED")
		want := azRealm
		if ep.need.scope != "" {
			want += `,scope="repository:` + azRepo + ":" + ep.need.scope + `"`
		}
		if got := rec.Header().Get("WWW-Authenticate"); got != want {
			t.Errorf("WWW-Authenticate: got %q, want %q", got, want)
		}
	case azWrong, azDisabled, azExpired:
		azCheckOCIError(t, rec, ep.method, http.StatusUnauthorized, "UNAUTHORIZED")
		if got := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, azRealm) {
			t.Errorf("WWW-Authenticate: got %q, want a challenge starting with %q", got, azRealm)
		}
	case azLacking:
		switch {
		case ep.need.catalog:
			azCheckAllowed(t, ep, rec)
			if got := azCatalog(t, rec); slices.Contains(got, azRepo) {
				t.Errorf("catalog: got %q, want %s hidden from a caller without metadata/read", got, azRepo)
			}
		case ep.need.action == "":
			azCheckAllowed(t, ep, rec)
		default:
			azCheckOCIError(t, rec, ep.method, http.StatusForbidden, "DENIED")
		}
	case azHolding, azAdmin:
		azCheckAllowed(t, ep, rec)
		if ep.need.catalog {
			if got := azCatalog(t, rec); !slices.Contains(got, azRepo) {
				t.Errorf("catalog: got %q, want it to list %s", got, azRepo)
			}
		}
		if ep.method == http.MethodGet && (ep.kind == registryapi.KindManifest || ep.kind == registryapi.KindBlob || ep.kind == registryapi.KindTags) && rec.Code != http.StatusOK {
			t.Errorf("got %d %s, want 200 for existing content", rec.Code, rec.Body)
		}
	}
}

func azCatalog(t testing.TB, rec *httptest.ResponseRecorder) []string {
	t.Helper()
	var out struct {
		Repositories []string `json:"repositories"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("catalog body %s: %v", rec.Body, err)
	}
	return out.Repositories
}

// TestAuthorizationHoldersChangeContent: a token holding content/write
// pushes and one holding content/delete deletes existing content, with
// Basic credentials and registry tokens. The matrix deletes absent
// content (so that its cases do not change what others read), where the
// admin's answer is a 404 that a refusal could imitate; here the deletes
// must answer 202 and take effect.
func TestAuthorizationHoldersChangeContent(t *testing.T) {
	t.Parallel()
	s := azStart(t, azMatrixSeed(t), nil)
	writer, deleter := "only-"+azSlug(auth.ContentWrite), "only-"+azSlug(auth.ContentDelete)
	creds := map[string][2]azCred{
		"basic": {azBasic(writer, azPW), azBasic(deleter, azPW)},
		"bearer": {
			azBearer(s.token(t, azBasic(writer, azPW), "repository:"+azRepo+":push")),
			azBearer(s.token(t, azBasic(deleter, azPW), "repository:"+azRepo+":delete")),
		},
	}
	admin := azBasic(auth.AdminUser, azAdminPW)
	for mode, c := range creds {
		// Content of its own per mode: one mode's deletes leave the other's.
		img := newAzImage(azRepo + " " + mode)
		s.pushAs(t, c[0], azRepo, mode, img)
		for _, path := range []string{
			"/v2/" + azRepo + "/manifests/" + mode,
			"/v2/" + azRepo + "/manifests/" + azDigest(img.manifest),
			"/v2/" + azRepo + "/blobs/" + azDigest(img.layer),
		} {
			if rec := s.do(http.MethodDelete, path, nil, nil, c[1]); rec.Code != http.StatusAccepted {
				t.Errorf("%s: DELETE %s as %s: got %d %s, want 202", mode, path, deleter, rec.Code, rec.Body)
			}
			if rec := s.do(http.MethodGet, path, nil, nil, admin); rec.Code != http.StatusNotFound {
				t.Errorf("%s: GET %s after its delete: got %d, want 404", mode, path, rec.Code)
			}
		}
	}
}

// TestAuthorizationBearerWithoutScope: a caller whose scope map allows an
// action but whose registry token was not issued for it gets a 401 that
// names the scope to ask for, so that clients fetch a new token.
func TestAuthorizationBearerWithoutScope(t *testing.T) {
	t.Parallel()
	s := azStart(t, azMatrixSeed(t), nil)
	s.push(t, azRepo, "v1")
	tok := s.token(t, azBasic("only-content-write", azPW), "repository:"+azRepo+":pull")
	rec := s.do(http.MethodPost, "/v2/"+azRepo+"/blobs/uploads/", nil, nil, azBearer(tok))
	azCheckOCIError(t, rec, http.MethodPost, http.StatusUnauthorized, "UNAUTHORIZED")
	want := azRealm + `,scope="repository:` + azRepo + `:push",error="insufficient_scope"`
	if got := rec.Header().Get("WWW-Authenticate"); got != want {
		t.Errorf("WWW-Authenticate: got %q, want %q", got, want)
	}

	// A registry token without registry:catalog:* cannot list the catalog.
	tok = s.token(t, azBasic("only-metadata-read", azPW), "repository:"+azRepo+":pull")
	rec = s.do(http.MethodGet, "/v2/_catalog", nil, nil, azBearer(tok))
	azCheckOCIError(t, rec, http.MethodGet, http.StatusUnauthorized, "UNAUTHORIZED")
	if got := rec.Header().Get("WWW-Authenticate"); !strings.Contains(got, `scope="registry:catalog:*"`) {
		t.Errorf("WWW-Authenticate: got %q, want it to ask for registry:catalog:*", got)
	}
}

// TestAuthorizationCatalogFilter: the catalog lists only the repositories
// the caller may metadata/read, with Basic credentials and registry tokens.
func TestAuthorizationCatalogFilter(t *testing.T) {
	t.Parallel()
	grants := map[string][]auth.RepositoryGrant{
		"catalog-ax":   {{Repository: "a/x", Actions: []auth.Action{auth.MetadataRead}}},
		"catalog-a":    {{Repository: "a/*", Actions: []auth.Action{auth.MetadataRead}}},
		"catalog-pull": {{Repository: "*", Actions: []auth.Action{auth.ContentRead}}},
	}
	s := azStart(t, func(tx *auth.Tx) error {
		for name, g := range grants {
			if err := tx.PutScopeMap(&auth.ScopeMap{Name: name + "-map", Repositories: g}); err != nil {
				return err
			}
			if err := tx.PutToken(azToken(t, name, name+"-map")); err != nil {
				return err
			}
		}
		return nil
	}, nil)
	for _, r := range []string{"a/x", "a/y", "b/x"} {
		s.push(t, r, "v1")
	}
	tests := []struct {
		user, pw string
		want     []string
	}{
		{"catalog-ax", azPW, []string{"a/x"}},
		{"catalog-a", azPW, []string{"a/x", "a/y"}},
		{"catalog-pull", azPW, []string{}},
		{auth.AdminUser, azAdminPW, []string{"a/x", "a/y", "b/x"}},
	}
	for _, tc := range tests {
		t.Run(tc.user, func(t *testing.T) {
			t.Parallel()
			tok := s.token(t, azBasic(tc.user, tc.pw), "registry:catalog:*")
			for mode, cred := range map[string]azCred{"basic": azBasic(tc.user, tc.pw), "bearer": azBearer(tok)} {
				rec := s.do(http.MethodGet, "/v2/_catalog", nil, nil, cred)
				if rec.Code != http.StatusOK {
					t.Fatalf("%s: got %d %s, want 200", mode, rec.Code, rec.Body)
				}
				if got := azCatalog(t, rec); !slices.Equal(got, tc.want) {
					t.Errorf("%s: catalog: got %q, want %q", mode, got, tc.want)
				}
			}
		})
	}
}

// TestAuthorizationAnonymousPull: with anonymous pull on, a caller without
// credentials may read manifests, blobs, tags and the catalog, and nothing
// else.
func TestAuthorizationAnonymousPull(t *testing.T) {
	t.Parallel()
	s := azStart(t, nil, func(c *config.Config) { c.Auth.AnonymousPull = true })
	const repo = "pub/app"
	img := s.push(t, repo, "v1")
	layer := "/v2/" + repo + "/blobs/" + azDigest(img.layer)
	mh := http.Header{"Content-Type": {"application/vnd.oci.image.manifest.v1+json"}}

	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/v2/"},
		{http.MethodGet, "/v2/" + repo + "/manifests/v1"},
		{http.MethodHead, "/v2/" + repo + "/manifests/v1"},
		{http.MethodGet, layer},
		{http.MethodHead, layer},
		{http.MethodGet, "/v2/" + repo + "/tags/list"},
		{http.MethodGet, "/v2/" + repo + "/referrers/" + azDigest(img.manifest)},
		{http.MethodGet, "/v2/_catalog"},
	} {
		rec := s.do(tc.method, tc.path, nil, nil, azCred{})
		if rec.Code != http.StatusOK {
			t.Errorf("anonymous %s %s: got %d %s, want 200", tc.method, tc.path, rec.Code, rec.Body)
		}
	}
	for _, tc := range []struct {
		method, path, scope string
		body                []byte
	}{
		{http.MethodPut, "/v2/" + repo + "/manifests/v2", "push", img.manifest},
		{http.MethodDelete, "/v2/" + repo + "/manifests/v1", "delete", nil},
		{http.MethodDelete, "/v2/" + repo + "/manifests/" + azDigest(img.manifest), "delete", nil},
		{http.MethodDelete, layer, "delete", nil},
		{http.MethodPost, "/v2/" + repo + "/blobs/uploads/", "push", nil},
		{http.MethodPost, "/v2/" + repo + "/blobs/uploads/?digest=" + azDigest([]byte("x")), "push", []byte("x")},
		{http.MethodPatch, "/v2/" + repo + "/blobs/uploads/6f1c1d57-4c0e-4d64-9a39-5d2d0a1b3c4e", "push", []byte("x")},
	} {
		rec := s.do(tc.method, tc.path, mh, tc.body, azCred{})
		azCheckOCIError(t, rec, tc.method, http.StatusUnauthorized, "UNAUTHORIZED")
		want := azRealm + `,scope="repository:` + repo + ":" + tc.scope + `"`
		if got := rec.Header().Get("WWW-Authenticate"); got != want {
			t.Errorf("anonymous %s %s: WWW-Authenticate: got %q, want %q", tc.method, tc.path, got, want)
		}
	}
	// Nothing was changed.
	if rec := s.do(http.MethodGet, "/v2/"+repo+"/manifests/v1", nil, nil, azCred{}); rec.Code != http.StatusOK {
		t.Errorf("manifest after refused deletes: got %d, want 200", rec.Code)
	}

	// An anonymous registry token carries pull only.
	tok := s.token(t, azCred{}, "repository:"+repo+":pull,push,delete")
	if got, want := azAccess(t, tok), `[{"type":"repository","name":"pub/app","actions":["pull"]}]`; got != want {
		t.Errorf("anonymous token access: got %s, want %s", got, want)
	}
	if rec := s.do(http.MethodGet, "/v2/"+repo+"/manifests/v1", nil, nil, azBearer(tok)); rec.Code != http.StatusOK {
		t.Errorf("GET manifest with an anonymous token: got %d %s, want 200", rec.Code, rec.Body)
	}
	rec := s.do(http.MethodPut, "/v2/"+repo+"/manifests/v2", mh, img.manifest, azBearer(tok))
	if rec.Code != http.StatusUnauthorized && rec.Code != http.StatusForbidden {
		t.Errorf("PUT manifest with an anonymous token: got %d %s, want it refused", rec.Code, rec.Body)
	}
}

// azAccess decodes the access claim of a registry token, unverified.
func azAccess(t testing.TB, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("registry token %q is not a JWS", tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Access json.RawMessage `json:"access"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return string(c.Access)
}

// TestAuthorizationAnonymousBearerPush documents what an anonymous
// registry token gets when it is used to push.
func TestAuthorizationAnonymousBearerPush(t *testing.T) {
	t.Parallel()
	s := azStart(t, nil, func(c *config.Config) { c.Auth.AnonymousPull = true })
	tok := s.token(t, azCred{}, "repository:pub/app:pull,push")
	rec := s.do(http.MethodPost, "/v2/pub/app/blobs/uploads/", nil, nil, azBearer(tok))
	azCheckOCIError(t, rec, http.MethodPost, http.StatusUnauthorized, "UNAUTHORIZED")
}

// azMgmtRoutes are the admin-only routes of the management API.
var azMgmtRoutes = []struct{ method, path string }{
	{http.MethodGet, "/api/v1/scope-maps"},
	{http.MethodPost, "/api/v1/scope-maps"},
	{http.MethodGet, "/api/v1/scope-maps/no-such-map"},
	{http.MethodPatch, "/api/v1/scope-maps/no-such-map"},
	{http.MethodDelete, "/api/v1/scope-maps/no-such-map"},
	{http.MethodGet, "/api/v1/tokens"},
	{http.MethodPost, "/api/v1/tokens"},
	{http.MethodGet, "/api/v1/tokens/no-such-token"},
	{http.MethodPatch, "/api/v1/tokens/no-such-token"},
	{http.MethodDelete, "/api/v1/tokens/no-such-token"},
	{http.MethodPost, "/api/v1/tokens/no-such-token/credentials"},
	{http.MethodGet, "/api/v1/connected-registries"},
	{http.MethodPost, "/api/v1/connected-registries"},
	{http.MethodGet, "/api/v1/connected-registries/no-such-cr"},
	{http.MethodPatch, "/api/v1/connected-registries/no-such-cr"},
	{http.MethodDelete, "/api/v1/connected-registries/no-such-cr"},
	{http.MethodPost, "/api/v1/connected-registries/no-such-cr/deactivate"},
	{http.MethodPost, "/api/v1/connected-registries/no-such-cr/settings"},
	{http.MethodGet, "/api/v1/connected-registries/no-such-cr/client-tokens"},
	{http.MethodPost, "/api/v1/connected-registries/no-such-cr/resync"},
	{http.MethodGet, "/api/v1/status"},
}

// TestAuthorizationManagementAPI: /api/v1/ is for the admin only, even a
// token with every repository right gets 403; a registry token, even the
// admin's, gets 401.
func TestAuthorizationManagementAPI(t *testing.T) {
	t.Parallel()
	s := azStart(t, func(tx *auth.Tx) error {
		if err := tx.PutToken(azToken(t, "repo-admin", auth.ScopeMapAdmin)); err != nil {
			return err
		}
		for i := range azMgmtRoutes {
			if err := tx.PutToken(azToken(t, fmt.Sprintf("mgmt-wrong-%02d", i), auth.ScopeMapAdmin)); err != nil {
				return err
			}
		}
		return nil
	}, nil)
	bearer := s.token(t, azBasic("repo-admin", azPW), "repository:x:pull,push,delete")
	adminBearer := s.token(t, azBasic(auth.AdminUser, azAdminPW), "repository:x:pull,push,delete")
	for i, rt := range azMgmtRoutes {
		t.Run(rt.method+rt.path, func(t *testing.T) {
			t.Parallel()
			body := []byte(nil)
			if rt.method == http.MethodPost || rt.method == http.MethodPatch {
				body = []byte("{}")
			}
			hdr := http.Header{"Content-Type": {"application/json"}}
			for _, tc := range []struct {
				name   string
				cred   azCred
				status int
				code   string
			}{
				{"none", azCred{}, http.StatusUnauthorized, "Unauthorized"},
				{"wrong-password", azBasic(fmt.Sprintf("mgmt-wrong-%02d", i), "not-"+azPW), http.StatusUnauthorized, "Unauthorized"},
				{"repository-admin-token", azBasic("repo-admin", azPW), http.StatusForbidden, "Forbidden"},
				{"repository-admin-bearer", azBearer(bearer), http.StatusUnauthorized, "Unauthorized"},
				{"admin-bearer", azBearer(adminBearer), http.StatusUnauthorized, "Unauthorized"},
			} {
				rec := s.do(rt.method, rt.path, hdr, body, tc.cred)
				if rec.Code != tc.status {
					t.Errorf("%s: got %d %s, want %d", tc.name, rec.Code, rec.Body, tc.status)
					continue
				}
				var e struct {
					Error struct{ Code, Message string } `json:"error"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code != tc.code || e.Error.Message == "" {
					t.Errorf("%s: body %s, want error code %s with a message", tc.name, rec.Body, tc.code)
				}
				if tc.name == "none" {
					if got := rec.Header().Get("WWW-Authenticate"); got != `Basic realm="outpost"` {
						t.Errorf("%s: WWW-Authenticate: got %q, want %q", tc.name, got, `Basic realm="outpost"`)
					}
				}
			}
			rec := s.do(rt.method, rt.path, hdr, body, azBasic(auth.AdminUser, azAdminPW))
			if rec.Code == http.StatusUnauthorized || rec.Code == http.StatusForbidden || rec.Code >= 500 {
				t.Errorf("admin: got %d %s, want the request served", rec.Code, rec.Body)
			}
		})
	}
}

// azHTTP sends a request to a real server.
func azHTTP(t testing.TB, method, rawURL string, body []byte, cred azCred) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	cred.apply(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestAuthorizationRevocation: disabling or deleting a token, or
// regenerating one of its passwords, takes effect on the very next
// request, for Basic credentials and for registry tokens issued before.
func TestAuthorizationRevocation(t *testing.T) {
	t.Parallel()
	s := azStart(t, func(tx *auth.Tx) error {
		m := &auth.ScopeMap{Name: "revoke-map", Repositories: []auth.RepositoryGrant{{Repository: "rev/app", Actions: []auth.Action{auth.ContentRead, auth.MetadataRead}}}}
		if err := tx.PutScopeMap(m); err != nil {
			return err
		}
		for _, n := range []string{"rv-disable", "rv-delete", "rv-rotate"} {
			tok := azToken(t, n, m.Name)
			tok.Passwords = append(tok.Passwords, auth.Password{Name: auth.Password2, Hash: azHash(t, azPW2), Created: time.Now().UTC()})
			if err := tx.PutToken(tok); err != nil {
				return err
			}
		}
		return nil
	}, nil)
	ts := httptest.NewServer(s.srv.Handler())
	t.Cleanup(ts.Close)
	host := ts.Listener.Addr().String()
	admin := azBasic(auth.AdminUser, azAdminPW)
	tags := ts.URL + "/v2/rev/app/tags/list"

	getToken := func(t *testing.T, cred azCred) string {
		t.Helper()
		resp, b := azHTTP(t, http.MethodGet, ts.URL+"/oauth2/token?service="+host+"&scope=repository:rev/app:pull", nil, cred)
		var out struct{ Token string }
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &out) != nil || out.Token == "" {
			t.Fatalf("GET /oauth2/token: got %d %s, want 200 with a token", resp.StatusCode, b)
		}
		return out.Token
	}
	wantAllowed := func(t *testing.T, what string, cred azCred) {
		t.Helper()
		resp, b := azHTTP(t, http.MethodGet, tags, nil, cred)
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden || resp.StatusCode >= 500 {
			t.Fatalf("%s: got %d %s, want the request authorized", what, resp.StatusCode, b)
		}
	}
	wantRefused := func(t *testing.T, what string, cred azCred) {
		t.Helper()
		resp, b := azHTTP(t, http.MethodGet, tags, nil, cred)
		var e struct{ Errors []struct{ Code string } }
		if resp.StatusCode != http.StatusUnauthorized || json.Unmarshal(b, &e) != nil || len(e.Errors) != 1 || e.Errors[0].Code != "UNAUTHORIZED" {
			t.Errorf("%s: got %d %s, want 401 UNAUTHORIZED", what, resp.StatusCode, b)
		}
	}

	for _, tc := range []struct {
		name, token  string
		method, path string
		body         string
	}{
		{"disabled", "rv-disable", http.MethodPatch, "/api/v1/tokens/rv-disable", `{"status":"disabled"}`},
		{"deleted", "rv-delete", http.MethodDelete, "/api/v1/tokens/rv-delete", ""},
		{"password1-regenerated", "rv-rotate", http.MethodPost, "/api/v1/tokens/rv-rotate/credentials", `{"password":"password1"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			basic1, basic2 := azBasic(tc.token, azPW), azBasic(tc.token, azPW2)
			wantAllowed(t, "Basic before", basic1)
			bearer1 := azBearer(getToken(t, basic1))
			bearer2 := azBearer(getToken(t, basic2))
			wantAllowed(t, "registry token before", bearer1)

			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			resp, b := azHTTP(t, tc.method, ts.URL+tc.path, body, admin)
			if resp.StatusCode >= 300 {
				t.Fatalf("%s %s: got %d %s", tc.method, tc.path, resp.StatusCode, b)
			}

			wantRefused(t, "Basic after", basic1)
			wantRefused(t, "registry token after", bearer1)
			if tc.name != "password1-regenerated" {
				return
			}
			// The other password, and registry tokens issued for it, still work.
			wantAllowed(t, "Basic password2 after", basic2)
			wantAllowed(t, "registry token of password2 after", bearer2)
			var view struct {
				Credentials struct {
					Passwords []struct{ Name, Value string }
				}
			}
			if err := json.Unmarshal(b, &view); err != nil || len(view.Credentials.Passwords) != 1 || view.Credentials.Passwords[0].Value == "" {
				t.Fatalf("regenerate answer %s: want the new password1", b)
			}
			wantAllowed(t, "Basic new password1", azBasic(tc.token, view.Credentials.Passwords[0].Value))
		})
	}
}

// TestAuthorizationLockout: repeated failed logins from one client are
// slowed down, then refused with 429 and Retry-After, even with the right
// password.
func TestAuthorizationLockout(t *testing.T) {
	t.Parallel()
	s := azStart(t, func(tx *auth.Tx) error {
		return tx.PutToken(azToken(t, "lock-user", auth.ScopeMapPull))
	}, nil)
	ts := httptest.NewServer(s.srv.Handler())
	t.Cleanup(ts.Close)

	const maxAttempts = 20
	locked := 0
	for i := 1; i <= maxAttempts; i++ {
		start := time.Now()
		resp, b := azHTTP(t, http.MethodGet, ts.URL+"/v2/", nil, azBasic("lock-user", "not-"+azPW))
		took := time.Since(start)
		if resp.StatusCode == http.StatusTooManyRequests {
			locked = i
			ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			if err != nil || ra < 1 || ra > 60 {
				t.Errorf("Retry-After: got %q, want 1..60 seconds", resp.Header.Get("Retry-After"))
			}
			var e struct{ Errors []struct{ Code string } }
			if json.Unmarshal(b, &e) != nil || len(e.Errors) != 1 || e.Errors[0].Code != "TOOMANYREQUESTS" {
				t.Errorf("429 body: got %s, want OCI error TOOMANYREQUESTS", b)
			}
			break
		}
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: got %d %s, want 401", i, resp.StatusCode, b)
		}
		// From the fourth failure on, answers are delayed progressively.
		if minDelay := min(time.Duration(i-3)*200*time.Millisecond, 2*time.Second); i > 3 && took < minDelay {
			t.Errorf("attempt %d answered in %v, want at least %v", i, took, minDelay)
		}
	}
	if locked == 0 {
		t.Fatalf("no 429 after %d failed logins", maxAttempts)
	}
	// Locked out: the right password is refused too, at /v2/ and at the
	// token endpoint.
	for _, c := range []azCred{azBasic("lock-user", azPW)} {
		resp, b := azHTTP(t, http.MethodGet, ts.URL+"/v2/", nil, c)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Errorf("/v2/ as %s while locked: got %d %s, want 429 with Retry-After", c.user, resp.StatusCode, b)
		}
		resp, b = azHTTP(t, http.MethodGet, ts.URL+"/oauth2/token?scope=repository:x:pull", nil, c)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Errorf("/oauth2/token as %s while locked: got %d %s, want 429 with Retry-After", c.user, resp.StatusCode, b)
		}
	}
}

// TestTokenEndpointSameAnswerForUnknownName: the token endpoint does not
// tell whether a name exists.
func TestTokenEndpointSameAnswerForUnknownName(t *testing.T) {
	t.Parallel()
	s := azStart(t, func(tx *auth.Tx) error { return tx.PutToken(azToken(t, "known-token", auth.ScopeMapPull)) }, nil)
	form := func(user string) []byte {
		return []byte(url.Values{"grant_type": {"password"}, "username": {user}, "password": {"not-" + azPW}, "scope": {"repository:x:pull"}}.Encode())
	}
	for _, tc := range []struct {
		name string
		send func(user string) *httptest.ResponseRecorder
	}{
		{"GET with Basic", func(user string) *httptest.ResponseRecorder {
			return s.do(http.MethodGet, "/oauth2/token?service="+azHost+"&scope=repository:x:pull", nil, nil, azBasic(user, "not-"+azPW))
		}},
		{"POST password grant", func(user string) *httptest.ResponseRecorder {
			return s.do(http.MethodPost, "/oauth2/token", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, form(user), azCred{})
		}},
	} {
		known, unknown := tc.send("known-token"), tc.send("unknown-token")
		if known.Code != http.StatusUnauthorized {
			t.Errorf("%s: wrong password: got %d %s, want 401", tc.name, known.Code, known.Body)
		}
		if unknown.Code != known.Code || unknown.Body.String() != known.Body.String() {
			t.Errorf("%s: unknown name got %d %s; wrong password got %d %s; want the same", tc.name, unknown.Code, unknown.Body, known.Code, known.Body)
		}
		for _, h := range []string{"WWW-Authenticate", "Content-Type", "Retry-After"} {
			if a, b := unknown.Header().Get(h), known.Header().Get(h); a != b {
				t.Errorf("%s: %s: unknown name %q, wrong password %q; want the same", tc.name, h, a, b)
			}
		}
	}
}
