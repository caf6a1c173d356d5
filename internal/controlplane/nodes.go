package controlplane

import (
	"fmt"
	"slices"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// nodeScopeMapName and nodeTokenName name a site's node identity.
func nodeScopeMapName(site string) string { return site + "-node-scope-map" }
func nodeTokenName(site string) string    { return site + "-node-token" }

// CreateNodeToken makes (or, when it exists, generates a new password of)
// the node token of a connected registry: <name>-node-token, bound to
// <name>-node-scope-map, which grants gateway/<name>/nodes/write and
// content/read and metadata/read on the repositories the site serves and
// stages, and nothing else. It becomes a client token of the site, so the
// site authenticates it (the node agents pull and report with it).
func (s *Service) CreateNodeToken(name string, req protocol.NodeTokenRequest) (*protocol.NodeToken, error) {
	if req.GeneratePassword == 0 {
		req.GeneratePassword = 1
	}
	if req.GeneratePassword != 1 && req.GeneratePassword != 2 {
		return nil, fmt.Errorf("%w: generatePassword %d: want 1 or 2", auth.ErrInvalid, req.GeneratePassword)
	}
	var out *protocol.NodeToken
	err := s.store.Update(func(tx *auth.Tx) error {
		c, err := getCR(tx, name)
		if err != nil {
			return err
		}
		tok, sm := nodeTokenName(name), nodeScopeMapName(name)
		if _, err := tx.ScopeMap(sm); err != nil {
			if err := tx.PutScopeMap(&auth.ScopeMap{Name: sm}); err != nil {
				return err
			}
		}
		if _, err := tx.Token(tok); err != nil {
			if err := tx.PutToken(&auth.Token{Name: tok, ScopeMap: sm, Status: auth.StatusEnabled}); err != nil {
				return err
			}
		}
		if !slices.Contains(c.ClientTokens, tok) {
			c.ClientTokens = append(c.ClientTokens, tok)
			if err := tx.PutRecord(bucket, c.Name, c); err != nil {
				return err
			}
		}
		if err := rebuildSyncScopeMaps(tx); err != nil {
			return err
		}
		slot := auth.Password1
		if req.GeneratePassword == 2 {
			slot = auth.Password2
		}
		view, err := tx.GenerateCredential(tok, slot, 0)
		if err != nil {
			return err
		}
		out = &protocol.NodeToken{TokenName: tok, ScopeMap: sm, Password: view.Credentials.Passwords[0].Value}
		return nil
	})
	return out, err
}

// nodeScopeMap rewrites a site's node scope map, when the site has one:
// read access to what the site serves and stages, and its node actions.
func nodeScopeMap(tx *auth.Tx, c *protocol.ConnectedRegistry, jobs []*protocol.StagingJob) error {
	old, err := tx.ScopeMap(nodeScopeMapName(c.Name))
	if err != nil {
		return nil //nolint:nilerr // no node token made for this site
	}
	m := &auth.ScopeMap{Name: old.Name, Created: old.Created, Description: "Node agents of connected registry " + c.Name + " (pre-pull)",
		Gateway: []auth.Action{auth.Action("gateway/" + c.Name + "/nodes/write")}}
	read := []auth.Action{auth.ContentRead, auth.MetadataRead}
	var add []auth.RepositoryGrant
	for _, r := range append(slices.Clone(c.Repositories), stagedRepos(jobs, c.Name)...) {
		add = append(add, auth.RepositoryGrant{Repository: r, Actions: read})
	}
	m.Repositories = auth.MergeGrants(nil, add, nil)
	if err := tx.PutScopeMap(m); err != nil {
		return fmt.Errorf("node scope map of %s: %w", c.Name, err)
	}
	return nil
}
