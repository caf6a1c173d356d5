// Package adminapi serves Outpost's management REST API under /api/v1/,
// every route of it: scope maps and tokens, and (fleet.go) connected
// registries, the gateway routes their edges call, the change feed and
// staging jobs. Routes are for the admin unless registered with their own
// authorization; bodies are JSON in and out, their types auth's and
// protocol's. docs/api.md documents it.
package adminapi

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"

	"github.com/outpost-registry/outpost/internal/auth"
)

// API is the management API handler.
type API struct {
	svc *auth.Service
	mux *http.ServeMux
	log *slog.Logger
}

// New builds the API on an auth service.
func New(svc *auth.Service, log *slog.Logger) *API {
	a := &API{svc: svc, mux: http.NewServeMux(), log: log}
	a.route("GET /api/v1/scope-maps", a.listScopeMaps)
	a.route("POST /api/v1/scope-maps", a.createScopeMap)
	a.route("GET /api/v1/scope-maps/{name}", a.showScopeMap)
	a.route("PATCH /api/v1/scope-maps/{name}", a.updateScopeMap)
	a.route("DELETE /api/v1/scope-maps/{name}", a.deleteScopeMap)
	a.route("GET /api/v1/tokens", a.listTokens)
	a.route("POST /api/v1/tokens", a.createToken)
	a.route("GET /api/v1/tokens/{name}", a.showToken)
	a.route("PATCH /api/v1/tokens/{name}", a.updateToken)
	a.route("DELETE /api/v1/tokens/{name}", a.deleteToken)
	a.route("POST /api/v1/tokens/{name}/credentials", a.generateCredential)
	return a
}

// HandlerFunc is an endpoint returning the status and value to encode, or
// an error, which becomes a JSON error body with the matching status.
type HandlerFunc func(r *http.Request) (int, any, error)

// Handle registers an admin-only endpoint.
func (a *API) Handle(pattern string, h HandlerFunc) { a.route(pattern, h) }

// StreamFunc is an endpoint that writes its own answer (a file
// download); an error returned before it writes anything becomes the JSON
// error body, one returned later cuts the connection so that the client
// sees a truncated answer rather than a complete-looking one.
type StreamFunc func(w http.ResponseWriter, r *http.Request) error

// HandleStream registers an admin-only endpoint that streams its answer.
func (a *API) HandleStream(pattern string, h StreamFunc) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := a.admin(r); err != nil {
			writeError(w, err)
			return
		}
		sw := &startedWriter{ResponseWriter: w}
		err := h(sw, r)
		switch {
		case err == nil:
		case !sw.started:
			if s, _, _ := classify(err); s >= 500 {
				a.log.Error("management request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			writeError(w, err)
		default:
			a.log.Error("management stream broke off", "method", r.Method, "path", r.URL.Path, "err", err)
			panic(http.ErrAbortHandler)
		}
	})
}

// startedWriter records whether an answer has begun.
type startedWriter struct {
	http.ResponseWriter
	started bool
}

func (w *startedWriter) WriteHeader(code int) { w.started = true; w.ResponseWriter.WriteHeader(code) }

func (w *startedWriter) Write(b []byte) (int, error) {
	w.started = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *startedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Authz decides whether an authenticated caller (nil when anonymous) may
// use an endpoint; it returns an *auth.Denial to refuse.
type Authz func(r *http.Request, p *auth.Principal) error

// HandleWith registers an endpoint with its own authorization, for routes
// that tokens other than the admin use (connected-registry sync).
func (a *API) HandleWith(pattern string, authz Authz, h HandlerFunc) {
	a.handle(pattern, func(r *http.Request) error {
		p, err := a.svc.AuthenticateBasic(r)
		if err != nil {
			return err
		}
		if p != nil && p.Admin {
			return nil
		}
		return authz(r, p)
	}, h)
}

// PrincipalFunc is an endpoint that decides itself what the caller may
// see, from the caller's principal (the admin included).
type PrincipalFunc func(r *http.Request, p *auth.Principal) (int, any, error)

// HandleAs registers an endpoint for any authenticated caller; the handler
// gets the principal and authorizes each item it touches with the scope
// map (auth.Service.Allowed), as the registry API does.
func (a *API) HandleAs(pattern string, h PrincipalFunc) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		p, err := a.svc.AuthenticateBasic(r)
		if err == nil && p == nil {
			err = &auth.Denial{Status: http.StatusUnauthorized, Message: "authentication required", Challenge: auth.BasicChallenge}
		}
		if err != nil {
			writeError(w, err)
			return
		}
		a.respond(w, r, func(r *http.Request) (int, any, error) { return h(r, p) })
	})
}

func (a *API) route(pattern string, h HandlerFunc) { a.handle(pattern, a.admin, h) }

func (a *API) handle(pattern string, check func(*http.Request) error, h HandlerFunc) {
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := check(r); err != nil {
			writeError(w, err)
			return
		}
		a.respond(w, r, h)
	})
}

// respond runs h and writes its answer or error.
func (a *API) respond(w http.ResponseWriter, r *http.Request, h HandlerFunc) {
	status, v, err := h(r)
	if err != nil {
		if s, _, _ := classify(err); s >= 500 {
			a.log.Error("management request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		writeError(w, err)
		return
	}
	if v == nil {
		w.WriteHeader(status)
		return
	}
	writeJSON(w, status, v)
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mux.ServeHTTP(w, r)
}

// admin lets only the administrator through, by Basic credentials: a
// registry token, even one issued to the admin, is refused.
func (a *API) admin(r *http.Request) error {
	p, err := a.svc.AuthenticateBasic(r)
	if err != nil {
		return err
	}
	if p == nil {
		return &auth.Denial{Status: http.StatusUnauthorized, Message: "authentication required", Challenge: auth.BasicChallenge}
	}
	if !p.Admin {
		return &auth.Denial{Status: http.StatusForbidden, Message: "the management API is for the admin only"}
	}
	return nil
}

// Error is the JSON error body of the management API.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// classify maps a domain error to a status and code.
func classify(err error) (int, string, http.Header) {
	var d *auth.Denial
	switch {
	case errors.As(err, &d):
		code := map[int]string{401: "Unauthorized", 403: "Forbidden", 429: "TooManyRequests"}[d.Status]
		return d.Status, code, d.Header()
	case errors.Is(err, auth.ErrNotFound):
		return http.StatusNotFound, "NotFound", nil
	case errors.Is(err, auth.ErrExists):
		return http.StatusConflict, "AlreadyExists", nil
	case errors.Is(err, auth.ErrInUse):
		return http.StatusConflict, "InUse", nil
	case errors.Is(err, auth.ErrReadOnly):
		return http.StatusConflict, "ReadOnly", nil
	case errors.Is(err, auth.ErrInvalid), errors.Is(err, errBadRequest):
		return http.StatusBadRequest, "InvalidArgument", nil
	}
	return http.StatusInternalServerError, "InternalError", nil
}

func writeError(w http.ResponseWriter, err error) {
	status, code, hdr := classify(err)
	for k, v := range hdr {
		w.Header()[k] = v
	}
	msg := err.Error()
	if status >= 500 {
		msg = "internal error"
	}
	writeJSON(w, status, struct {
		Error Error `json:"error"`
	}{Error{Code: code, Message: msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

var errBadRequest = errors.New("bad request")

// Decode reads a JSON request body into v, rejecting unknown fields.
func Decode(r *http.Request, v any) error { return decode(r, v) }

// decode reads a JSON body, rejecting unknown fields.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.Join(errBadRequest, errors.New("request body: "+err.Error()))
	}
	return nil
}
