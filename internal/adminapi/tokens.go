package adminapi

import (
	"fmt"
	"net/http"
	"time"

	"github.com/outpost-registry/outpost/internal/auth"
)

// TokenRequest creates a token bound to an existing scope map, or to a new
// scope map "<name>-scope-map" built from Repositories.
type TokenRequest struct {
	Name             string                 `json:"name"`
	ScopeMap         string                 `json:"scopeMapName,omitempty"`
	Repositories     []auth.RepositoryGrant `json:"repositories,omitempty"`
	Status           string                 `json:"status,omitempty"`
	ExpirationInDays int                    `json:"expirationInDays,omitempty"`
	// NoPasswords creates the token without passwords; generate them later.
	NoPasswords bool `json:"noPasswords,omitempty"`
}

// TokenUpdate changes a token's scope map or status.
type TokenUpdate struct {
	ScopeMap string `json:"scopeMapName,omitempty"`
	Status   string `json:"status,omitempty"`
}

// CredentialRequest generates one password of a token.
type CredentialRequest struct {
	Password         string `json:"password"`
	ExpirationInDays int    `json:"expirationInDays,omitempty"`
}

// PasswordView describes a password; Value is set only in the response
// that generated it.
type PasswordView struct {
	Name    auth.PasswordName `json:"name"`
	Value   string            `json:"value,omitempty"`
	Created time.Time         `json:"creationTime"`
	Expiry  *time.Time        `json:"expiry,omitempty"`
}

// Credentials holds a token's passwords.
type Credentials struct {
	Passwords []PasswordView `json:"passwords"`
}

// TokenView is a token as the API shows it: never a hash.
type TokenView struct {
	Name        string           `json:"name"`
	ScopeMap    string           `json:"scopeMapName"`
	Status      auth.TokenStatus `json:"status"`
	Created     time.Time        `json:"creationDate"`
	Credentials Credentials      `json:"credentials"`
}

func viewToken(t *auth.Token, values map[auth.PasswordName]string) TokenView {
	v := TokenView{Name: t.Name, ScopeMap: t.ScopeMap, Status: t.Status, Created: t.Created, Credentials: Credentials{Passwords: []PasswordView{}}}
	for _, p := range t.Passwords {
		v.Credentials.Passwords = append(v.Credentials.Passwords, PasswordView{Name: p.Name, Value: values[p.Name], Created: p.Created, Expiry: p.Expiry})
	}
	return v
}

// ViewToken shows a token without any password value.
func ViewToken(t *auth.Token) TokenView { return viewToken(t, nil) }

func (a *API) listTokens(*http.Request) (int, any, error) {
	out := []TokenView{}
	for _, t := range a.svc.Store().Tokens() {
		out = append(out, viewToken(t, nil))
	}
	return http.StatusOK, out, nil
}

func (a *API) showToken(r *http.Request) (int, any, error) {
	t, err := a.svc.Store().Token(r.PathValue("name"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, viewToken(t, nil), nil
}

// newPassword generates a password for slot n, returning the stored form
// and the clear value.
func newPassword(n auth.PasswordName, now time.Time, days int) (auth.Password, string, error) {
	if days < 0 || days > 3650 {
		return auth.Password{}, "", fmt.Errorf("%w: expirationInDays %d is outside 0..3650", auth.ErrInvalid, days)
	}
	value, err := auth.GeneratePassword()
	if err != nil {
		return auth.Password{}, "", err
	}
	hash, err := auth.HashPassword(value)
	if err != nil {
		return auth.Password{}, "", err
	}
	p := auth.Password{Name: n, Hash: hash, Created: now}
	if days > 0 {
		exp := now.AddDate(0, 0, days)
		p.Expiry = &exp
	}
	return p, value, nil
}

func (a *API) createToken(r *http.Request) (int, any, error) {
	var req TokenRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	view, err := CreateToken(a.svc.Store(), req)
	return http.StatusCreated, view, err
}

// CreateToken creates the token of req (and its scope map when req gives
// repositories) and returns it with the clear values of its passwords,
// shown only this once. The dashboard calls it as the API does.
func CreateToken(store *auth.Store, req TokenRequest) (TokenView, error) {
	status := auth.StatusEnabled
	if req.Status != "" {
		var err error
		if status, err = auth.ParseTokenStatus(req.Status); err != nil {
			return TokenView{}, err
		}
	}
	if (req.ScopeMap == "") == (len(req.Repositories) == 0) {
		return TokenView{}, fmt.Errorf("%w: give either scopeMapName or repositories", auth.ErrInvalid)
	}
	values := map[auth.PasswordName]string{}
	var view TokenView
	err := store.Update(func(tx *auth.Tx) error {
		if _, err := tx.Token(req.Name); err == nil {
			return fmt.Errorf("%w: token %q", auth.ErrExists, req.Name)
		}
		t := &auth.Token{Name: req.Name, ScopeMap: req.ScopeMap, Status: status}
		if len(req.Repositories) > 0 {
			m := &auth.ScopeMap{Name: req.Name + "-scope-map", Description: "Scope map of token " + req.Name, Repositories: req.Repositories}
			if _, err := tx.ScopeMap(m.Name); err == nil {
				return fmt.Errorf("%w: scope map %q", auth.ErrExists, m.Name)
			}
			if err := tx.PutScopeMap(m); err != nil {
				return err
			}
			t.ScopeMap = m.Name
		}
		if !req.NoPasswords {
			for _, n := range []auth.PasswordName{auth.Password1, auth.Password2} {
				p, v, err := newPassword(n, tx.Now(), req.ExpirationInDays)
				if err != nil {
					return err
				}
				t.Passwords = append(t.Passwords, p)
				values[n] = v
			}
		}
		if err := tx.PutToken(t); err != nil {
			return err
		}
		view = viewToken(t, values)
		return nil
	})
	return view, err
}

func (a *API) updateToken(r *http.Request) (int, any, error) {
	var req TokenUpdate
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	view, err := UpdateToken(a.svc.Store(), r.PathValue("name"), req)
	return http.StatusOK, view, err
}

// UpdateToken changes a token's scope map or status.
func UpdateToken(store *auth.Store, name string, req TokenUpdate) (TokenView, error) {
	var view TokenView
	err := store.Update(func(tx *auth.Tx) error {
		old, err := tx.Token(name)
		if err != nil {
			return err
		}
		t := *old
		if req.ScopeMap != "" {
			t.ScopeMap = req.ScopeMap
		}
		if req.Status != "" {
			if t.Status, err = auth.ParseTokenStatus(req.Status); err != nil {
				return err
			}
		}
		if err := tx.PutToken(&t); err != nil {
			return err
		}
		view = viewToken(&t, nil)
		return nil
	})
	return view, err
}

func (a *API) deleteToken(r *http.Request) (int, any, error) {
	err := a.svc.Store().Update(func(tx *auth.Tx) error { return tx.DeleteToken(r.PathValue("name")) })
	return http.StatusNoContent, nil, err
}

// GenerateCredential replaces one password of a token in tx and returns
// its clear value. The control plane uses it for sync tokens too.
func GenerateCredential(tx *auth.Tx, name string, slot auth.PasswordName, days int) (TokenView, error) {
	old, err := tx.Token(name)
	if err != nil {
		return TokenView{}, err
	}
	if slot != auth.Password1 && slot != auth.Password2 {
		return TokenView{}, fmt.Errorf("%w: password %q: want password1 or password2", auth.ErrInvalid, slot)
	}
	p, value, err := newPassword(slot, tx.Now(), days)
	if err != nil {
		return TokenView{}, err
	}
	t := *old
	t.Passwords = nil
	for _, q := range old.Passwords {
		if q.Name != slot {
			t.Passwords = append(t.Passwords, q)
		}
	}
	t.Passwords = append(t.Passwords, p)
	if t.Passwords[0].Name == auth.Password2 && len(t.Passwords) == 2 {
		t.Passwords[0], t.Passwords[1] = t.Passwords[1], t.Passwords[0]
	}
	if err := tx.PutToken(&t); err != nil {
		return TokenView{}, err
	}
	v := viewToken(&t, map[auth.PasswordName]string{slot: value})
	// Show only the generated password, as az acr token credential generate.
	for _, pv := range v.Credentials.Passwords {
		if pv.Name == slot {
			v.Credentials.Passwords = []PasswordView{pv}
			break
		}
	}
	return v, nil
}

func (a *API) generateCredential(r *http.Request) (int, any, error) {
	var req CredentialRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	var view TokenView
	err := a.svc.Store().Update(func(tx *auth.Tx) error {
		var err error
		view, err = GenerateCredential(tx, r.PathValue("name"), auth.PasswordName(req.Password), req.ExpirationInDays)
		return err
	})
	return http.StatusOK, view, err
}
