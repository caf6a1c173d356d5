package adminapi

import (
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
	view, err := a.svc.Store().CreateToken(req)
	return http.StatusCreated, view, err
}

func (a *API) updateToken(r *http.Request) (int, any, error) {
	var req auth.TokenUpdate
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	view, err := a.svc.Store().UpdateToken(r.PathValue("name"), req)
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
