package server

import (
	"net/http"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/registryapi"
)

// authorizer adapts the auth service to the registry API: it maps each
// registry action to the scope-map action and Docker token scope that
// grant it, and each denial to an OCI error.
type authorizer struct {
	svc *auth.Service
	// readOnly, when set and true, refuses pushes and deletes (a ReadOnly
	// connected registry).
	readOnly func() bool
}

var (
	_ registryapi.Authorizer    = authorizer{}
	_ registryapi.Identifier    = authorizer{}
	_ registryapi.CatalogFilter = authorizer{}
)

// needFor maps a registry action: pull and HEAD need content/read; push,
// upload and mount need content/write; DELETE needs content/delete; tag
// and referrer listings need metadata/read.
func needFor(a registryapi.Access) auth.Need {
	switch a.Action {
	case registryapi.ActionPush:
		return auth.Need{Repository: a.Repository, Action: auth.ContentWrite, Scope: "push"}
	case registryapi.ActionDelete:
		return auth.Need{Repository: a.Repository, Action: auth.ContentDelete, Scope: "delete"}
	case registryapi.ActionMountFrom:
		return auth.Need{Repository: a.Repository, Action: auth.ContentRead}
	case registryapi.ActionList:
		return auth.Need{Repository: a.Repository, Action: auth.MetadataRead, Scope: "pull"}
	default:
		return auth.Need{Repository: a.Repository, Action: auth.ContentRead, Scope: "pull"}
	}
}

func (z authorizer) Authorize(r *http.Request, access []registryapi.Access) error {
	_, err := z.AuthorizeAs(r, access)
	return err
}

// AuthorizeAs implements registryapi.Identifier: the credential is the
// token name (or "admin") behind Basic credentials or a registry token,
// and "" for an anonymous caller.
func (z authorizer) AuthorizeAs(r *http.Request, access []registryapi.Access) (string, error) {
	needs := make([]auth.Need, len(access))
	for i, a := range access {
		needs[i] = needFor(a)
	}
	p, err := z.svc.Check(r, needs)
	if err == nil && z.readOnly != nil && z.readOnly() {
		for _, a := range access {
			if a.Action == registryapi.ActionPush || a.Action == registryapi.ActionDelete {
				return "", readOnlyDenial()
			}
		}
	}
	if err != nil {
		return "", err
	}
	if p.Anonymous() {
		return "", nil
	}
	return p.Name, nil
}

func (z authorizer) CatalogFilter(r *http.Request) (func(string) bool, error) {
	p, err := z.svc.CheckCatalog(r)
	if err != nil {
		return nil, err
	}
	return func(repo string) bool { return z.svc.Allowed(p, repo, auth.MetadataRead) }, nil
}
