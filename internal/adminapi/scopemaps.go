package adminapi

import (
	"net/http"

	"github.com/outpost-registry/outpost/internal/auth"
)

func (a *API) listScopeMaps(*http.Request) (int, any, error) {
	return http.StatusOK, a.svc.Store().ScopeMaps(), nil
}

func (a *API) showScopeMap(r *http.Request) (int, any, error) {
	m, err := a.svc.Store().ScopeMap(r.PathValue("name"))
	return http.StatusOK, m, err
}

func (a *API) createScopeMap(r *http.Request) (int, any, error) {
	var req auth.ScopeMapRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	m, err := a.svc.Store().CreateScopeMap(req)
	return http.StatusCreated, m, err
}

func (a *API) updateScopeMap(r *http.Request) (int, any, error) {
	var req auth.ScopeMapUpdate
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	var out *auth.ScopeMap
	err := a.svc.Store().Update(func(tx *auth.Tx) error {
		old, err := tx.ScopeMap(r.PathValue("name"))
		if err != nil {
			return err
		}
		m := *old
		if req.Description != nil {
			m.Description = *req.Description
		}
		m.Repositories = auth.MergeGrants(old.Repositories, req.Add, req.Remove)
		out = &m
		return tx.PutScopeMap(&m)
	})
	return http.StatusOK, out, err
}

func (a *API) deleteScopeMap(r *http.Request) (int, any, error) {
	err := a.svc.Store().Update(func(tx *auth.Tx) error { return tx.DeleteScopeMap(r.PathValue("name")) })
	return http.StatusNoContent, nil, err
}
