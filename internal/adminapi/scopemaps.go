package adminapi

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/outpost-registry/outpost/internal/auth"
)

// ScopeMapRequest creates a scope map.
type ScopeMapRequest struct {
	Name         string                 `json:"name"`
	Description  string                 `json:"description,omitempty"`
	Repositories []auth.RepositoryGrant `json:"repositories"`
}

// ScopeMapUpdate changes a scope map: the description, and actions added
// to or removed from repositories (a repository left without actions is
// removed).
type ScopeMapUpdate struct {
	Description *string                `json:"description,omitempty"`
	Add         []auth.RepositoryGrant `json:"addRepositories,omitempty"`
	Remove      []auth.RepositoryGrant `json:"removeRepositories,omitempty"`
}

func (a *API) listScopeMaps(*http.Request) (int, any, error) {
	return http.StatusOK, a.svc.Store().ScopeMaps(), nil
}

func (a *API) showScopeMap(r *http.Request) (int, any, error) {
	m, err := a.svc.Store().ScopeMap(r.PathValue("name"))
	return http.StatusOK, m, err
}

func (a *API) createScopeMap(r *http.Request) (int, any, error) {
	var req ScopeMapRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	m, err := CreateScopeMap(a.svc.Store(), req)
	return http.StatusCreated, m, err
}

// CreateScopeMap creates the scope map of req; one of that name must not
// exist.
func CreateScopeMap(store *auth.Store, req ScopeMapRequest) (*auth.ScopeMap, error) {
	m := &auth.ScopeMap{Name: req.Name, Description: req.Description, Repositories: req.Repositories}
	err := store.Update(func(tx *auth.Tx) error {
		if _, err := tx.ScopeMap(m.Name); err == nil {
			return fmt.Errorf("%w: scope map %q", auth.ErrExists, m.Name)
		}
		return tx.PutScopeMap(m)
	})
	return m, err
}

// MergeGrants adds the actions of add to grants and takes those of remove
// away, dropping repositories left without actions.
func MergeGrants(grants, add, remove []auth.RepositoryGrant) []auth.RepositoryGrant {
	out := make([]auth.RepositoryGrant, 0, len(grants)+len(add))
	for _, g := range grants {
		out = append(out, auth.RepositoryGrant{Repository: g.Repository, Actions: slices.Clone(g.Actions)})
	}
	find := func(repo string) int {
		return slices.IndexFunc(out, func(g auth.RepositoryGrant) bool { return g.Repository == repo })
	}
	for _, g := range add {
		i := find(g.Repository)
		if i < 0 {
			out = append(out, auth.RepositoryGrant{Repository: g.Repository})
			i = len(out) - 1
		}
		for _, act := range g.Actions {
			if !slices.Contains(out[i].Actions, act) {
				out[i].Actions = append(out[i].Actions, act)
			}
		}
	}
	for _, g := range remove {
		i := find(g.Repository)
		if i < 0 {
			continue
		}
		if len(g.Actions) == 0 {
			out[i].Actions = nil
		}
		out[i].Actions = slices.DeleteFunc(out[i].Actions, func(act auth.Action) bool { return slices.Contains(g.Actions, act) })
	}
	return slices.DeleteFunc(out, func(g auth.RepositoryGrant) bool { return len(g.Actions) == 0 })
}

func (a *API) updateScopeMap(r *http.Request) (int, any, error) {
	var req ScopeMapUpdate
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
		m.Repositories = MergeGrants(old.Repositories, req.Add, req.Remove)
		out = &m
		return tx.PutScopeMap(&m)
	})
	return http.StatusOK, out, err
}

func (a *API) deleteScopeMap(r *http.Request) (int, any, error) {
	err := a.svc.Store().Update(func(tx *auth.Tx) error { return tx.DeleteScopeMap(r.PathValue("name")) })
	return http.StatusNoContent, nil, err
}
