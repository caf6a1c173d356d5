package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/outpost-registry/outpost/internal/oci"
)

// ErrScopeInvalid reports a malformed scope parameter.
var ErrScopeInvalid = errors.New("invalid scope")

// ParseScope parses one scope of the Docker token specification,
// "repository:<name>:<action>[,<action>…]" or "registry:catalog:*".
func ParseScope(s string) (ResourceActions, error) {
	typ, rest, ok := strings.Cut(s, ":")
	i := strings.LastIndexByte(rest, ':')
	if !ok || i < 0 {
		return ResourceActions{}, fmt.Errorf("%w: %q: want type:name:actions", ErrScopeInvalid, s)
	}
	name, actions := rest[:i], rest[i+1:]
	ra := ResourceActions{Type: typ, Name: name}
	for _, a := range strings.Split(actions, ",") {
		if a != "" && !contains(ra.Actions, a) {
			ra.Actions = append(ra.Actions, a)
		}
	}
	switch typ {
	case "repository":
		if err := oci.ValidateName(name); err != nil {
			return ResourceActions{}, fmt.Errorf("%w: %q: %w", ErrScopeInvalid, s, err)
		}
	case "registry":
		if name != "catalog" {
			return ResourceActions{}, fmt.Errorf("%w: %q: unknown registry resource", ErrScopeInvalid, s)
		}
	default:
		return ResourceActions{}, fmt.Errorf("%w: %q: unknown resource type %q", ErrScopeInvalid, s, typ)
	}
	return ra, nil
}

// scopeActions maps Docker token actions to the scope-map action that
// grants them.
var scopeActions = map[string]Action{"pull": ContentRead, "push": ContentWrite, "delete": ContentDelete}

// grant keeps, of the requested resources, what p may have.
func (s *Service) grant(p *Principal, requested []ResourceActions) []ResourceActions {
	out := []ResourceActions{}
	for _, ra := range requested {
		kept := ResourceActions{Type: ra.Type, Name: ra.Name, Actions: []string{}}
		if ra.Type == "registry" {
			if !p.Anonymous() {
				kept.Actions = append(kept.Actions, "*")
			}
		} else {
			want := ra.Actions
			if contains(want, "*") {
				want = []string{"pull", "push", "delete"}
			}
			for _, a := range want {
				act, ok := scopeActions[a]
				if !ok {
					continue
				}
				if s.Allowed(p, ra.Name, act) || (a == "pull" && s.Allowed(p, ra.Name, MetadataRead)) {
					if !contains(kept.Actions, a) {
						kept.Actions = append(kept.Actions, a)
					}
				}
			}
		}
		if len(kept.Actions) > 0 {
			out = append(out, kept)
		}
	}
	return out
}

type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
}

type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func writeTokenJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// TokenHandler serves /oauth2/token: GET with Basic credentials (the
// Docker registry token protocol) and POST with grant_type=password (its
// OAuth2 variant, used by containerd).
func (s *Service) TokenHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var (
			p      *Principal
			err    error
			scopes []string
		)
		switch r.Method {
		case http.MethodGet:
			for _, v := range r.URL.Query()["scope"] {
				scopes = append(scopes, strings.Fields(v)...)
			}
			p, err = s.Authenticate(r)
			if p != nil && p.claims != nil {
				// A registry token is not a credential for new tokens.
				p, err = nil, &Denial{Status: http.StatusUnauthorized, Message: "present Basic credentials to obtain a token"}
			}
		case http.MethodPost:
			if perr := r.ParseForm(); perr != nil {
				writeTokenJSON(w, http.StatusBadRequest, oauthError{"invalid_request", "malformed form body"})
				return
			}
			if gt := r.PostForm.Get("grant_type"); gt != "password" {
				writeTokenJSON(w, http.StatusBadRequest, oauthError{"unsupported_grant_type", "only grant_type=password is supported"})
				return
			}
			scopes = strings.Fields(r.PostForm.Get("scope"))
			p, err = s.login(r, r.PostForm.Get("username"), r.PostForm.Get("password"))
		default:
			w.Header().Set("Allow", "GET, POST")
			writeTokenJSON(w, http.StatusMethodNotAllowed, oauthError{"invalid_request", "use GET or POST"})
			return
		}
		if err != nil {
			var d *Denial
			if !errors.As(err, &d) {
				d = &Denial{Status: http.StatusUnauthorized, Message: "invalid credentials"}
			}
			for k, v := range d.Header() {
				w.Header()[k] = v
			}
			if d.Status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Basic realm="outpost"`)
			}
			writeTokenJSON(w, d.Status, oauthError{"invalid_grant", d.Message})
			return
		}
		if p == nil && !s.anonymousPull {
			w.Header().Set("WWW-Authenticate", `Basic realm="outpost"`)
			writeTokenJSON(w, http.StatusUnauthorized, oauthError{"invalid_client", "credentials are required"})
			return
		}
		var requested []ResourceActions
		for _, sc := range scopes {
			ra, err := ParseScope(sc)
			if err != nil {
				writeTokenJSON(w, http.StatusBadRequest, oauthError{"invalid_scope", err.Error()})
				return
			}
			requested = append(requested, ra)
		}
		now := s.now()
		subject, password, hash := "", "", ""
		if p != nil {
			subject, password, hash = s.credentialOf(p, r, now)
		}
		access := s.grant(p, requested)
		tok, err := s.sign(subject, serviceName(r), password, hash, access, now)
		if err != nil {
			s.log.Error("sign registry token", "err", err)
			writeTokenJSON(w, http.StatusInternalServerError, oauthError{"server_error", "could not issue a token"})
			return
		}
		writeTokenJSON(w, http.StatusOK, tokenResponse{
			Token: tok, AccessToken: tok, ExpiresIn: int(s.tokenTTL / time.Second), IssuedAt: now.UTC().Format(time.RFC3339),
		})
	})
}

// credentialOf finds which password the principal logged in with, so the
// registry token can be revoked with it.
func (s *Service) credentialOf(p *Principal, r *http.Request, now time.Time) (subject, password, hash string) {
	if p.Admin {
		s.settleAdmin(r.Context())
		return AdminUser, AdminUser, s.store.AdminHash()
	}
	pw := r.PostForm.Get("password")
	if pw == "" {
		_, pw, _ = r.BasicAuth()
	}
	t, err := s.store.Token(p.Name)
	if err != nil {
		return p.Name, "", ""
	}
	for _, check := range []func(hash, pw string, now time.Time) bool{s.verifier.cached, s.verifier.verify} {
		for i := range t.Passwords {
			slot := &t.Passwords[i]
			if !slot.Expired(now) && check(slot.Hash, pw, now) {
				return p.Name, string(slot.Name), slot.Hash
			}
		}
	}
	return p.Name, "", ""
}
