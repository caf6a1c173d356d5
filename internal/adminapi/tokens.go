package adminapi

import (
	"fmt"
	"net/http"

	"github.com/outpost-registry/outpost/internal/auth"
)

func (a *API) listTokens(*http.Request) (int, any, error) {
	out := []auth.TokenView{}
	for _, t := range a.svc.Store().Tokens() {
		out = append(out, auth.ViewToken(t))
	}
	return http.StatusOK, out, nil
}

func (a *API) showToken(r *http.Request) (int, any, error) {
	t, err := a.svc.Store().Token(r.PathValue("name"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, auth.ViewToken(t), nil
}

func (a *API) createToken(r *http.Request) (int, any, error) {
	var req auth.TokenRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	status := auth.StatusEnabled
	if req.Status != "" {
		var err error
		if status, err = auth.ParseTokenStatus(req.Status); err != nil {
			return 0, nil, err
		}
	}
	if (req.ScopeMap == "") == (len(req.Repositories) == 0) {
		return 0, nil, fmt.Errorf("%w: give either scopeMapName or repositories", auth.ErrInvalid)
	}
	values := map[auth.PasswordName]string{}
	var view auth.TokenView
	err := a.svc.Store().Update(func(tx *auth.Tx) error {
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
				p, v, err := auth.NewPassword(n, tx.Now(), req.ExpirationInDays)
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
		view = auth.ViewTokenWith(t, values)
		return nil
	})
	return http.StatusCreated, view, err
}

func (a *API) updateToken(r *http.Request) (int, any, error) {
	var req auth.TokenUpdate
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	var view auth.TokenView
	err := a.svc.Store().Update(func(tx *auth.Tx) error {
		old, err := tx.Token(r.PathValue("name"))
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
		view = auth.ViewToken(&t)
		return nil
	})
	return http.StatusOK, view, err
}

func (a *API) deleteToken(r *http.Request) (int, any, error) {
	err := a.svc.Store().Update(func(tx *auth.Tx) error { return tx.DeleteToken(r.PathValue("name")) })
	return http.StatusNoContent, nil, err
}

func (a *API) generateCredential(r *http.Request) (int, any, error) {
	var req auth.CredentialRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	var view auth.TokenView
	err := a.svc.Store().Update(func(tx *auth.Tx) error {
		var err error
		view, err = tx.GenerateCredential(r.PathValue("name"), auth.PasswordName(req.Password), req.ExpirationInDays)
		return err
	})
	return http.StatusOK, view, err
}
