package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/adminapi"
	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/controlplane"
	"github.com/outpost-registry/outpost/internal/protocol"
	"github.com/outpost-registry/outpost/internal/storage/gc"
	"github.com/outpost-registry/outpost/internal/storage/retention"
)

// retentionBucket keeps the policies made through the API in the identity
// store.
const retentionBucket = "retention"

// policies holds the retention policies: those of the configuration file
// (read-only, first, in file order) and those made through the API
// (after them, by name).
type policies struct {
	fixed []retention.Policy
	store *auth.Store
}

// configPolicies converts and checks the policies of the configuration.
func configPolicies(c config.Retention) ([]retention.Policy, error) {
	out := make([]retention.Policy, 0, len(c.Policies))
	var errs []error
	for i, p := range c.Policies {
		rp := retention.Policy{Name: p.Name, Repositories: p.Repositories, KeepNewest: p.KeepNewest, KeepTags: p.KeepTags,
			KeepSemver: p.KeepSemver, KeepWithin: retention.Duration(p.KeepWithin), UntaggedOlderThan: retention.Duration(p.UntaggedOlderThan),
			Source: retention.SourceConfig}
		if err := rp.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("retention.policies[%d]: %w", i, err))
		}
		out = append(out, rp)
	}
	return out, errors.Join(errs...)
}

// all lists every policy in the order they apply.
func (p *policies) all() ([]retention.Policy, error) {
	out := slices.Clone(p.fixed)
	err := p.store.Records(retentionBucket, func(_ string, raw []byte) error {
		var rp retention.Policy
		if err := json.Unmarshal(raw, &rp); err != nil {
			return fmt.Errorf("decode retention policy: %w", err)
		}
		out = append(out, rp)
		return nil
	})
	return out, err
}

func (p *policies) get(name string) (retention.Policy, error) {
	all, err := p.all()
	if err != nil {
		return retention.Policy{}, err
	}
	i := slices.IndexFunc(all, func(rp retention.Policy) bool { return rp.Name == name })
	if i < 0 {
		return retention.Policy{}, fmt.Errorf("retention policy %q: %w", name, auth.ErrNotFound)
	}
	return all[i], nil
}

// RetentionUpdate changes a retention policy: each field set replaces
// the policy's.
type RetentionUpdate struct {
	Repositories      []string            `json:"repositories,omitempty"`
	KeepNewest        *int                `json:"keepNewest,omitempty"`
	KeepTags          *[]string           `json:"keepTags,omitempty"`
	KeepSemver        *string             `json:"keepSemver,omitempty"`
	KeepWithin        *retention.Duration `json:"keepWithin,omitempty"`
	UntaggedOlderThan *retention.Duration `json:"untaggedOlderThan,omitempty"`
}

func (u RetentionUpdate) apply(p *retention.Policy) {
	if u.Repositories != nil {
		p.Repositories = u.Repositories
	}
	if u.KeepNewest != nil {
		p.KeepNewest = *u.KeepNewest
	}
	if u.KeepTags != nil {
		p.KeepTags = *u.KeepTags
	}
	if u.KeepSemver != nil {
		p.KeepSemver = *u.KeepSemver
	}
	if u.KeepWithin != nil {
		p.KeepWithin = *u.KeepWithin
	}
	if u.UntaggedOlderThan != nil {
		p.UntaggedOlderThan = *u.UntaggedOlderThan
	}
}

// RetentionRunRequest is the body of POST /api/v1/retention/runs.
type RetentionRunRequest struct {
	DryRun bool `json:"dryRun"`
	// Policies, when set, are the only policies applied (by name).
	Policies []string `json:"policies,omitempty"`
}

// put stores p, a new policy unless replace.
func (p *policies) put(rp retention.Policy, replace bool) error {
	rp.Source = ""
	if err := rp.Validate(); err != nil {
		return fmt.Errorf("%w: %w", auth.ErrInvalid, err)
	}
	if slices.ContainsFunc(p.fixed, func(f retention.Policy) bool { return f.Name == rp.Name }) {
		if replace {
			return fmt.Errorf("%w: retention policy %q is set in the configuration file: change it there", auth.ErrInvalid, rp.Name)
		}
		return fmt.Errorf("%w: retention policy %q (in the configuration file)", auth.ErrExists, rp.Name)
	}
	return p.store.Update(func(tx *auth.Tx) error {
		var old retention.Policy
		exists := tx.Record(retentionBucket, rp.Name, &old) == nil
		switch {
		case exists && !replace:
			return fmt.Errorf("%w: retention policy %q", auth.ErrExists, rp.Name)
		case !exists && replace:
			return fmt.Errorf("retention policy %q: %w", rp.Name, auth.ErrNotFound)
		}
		return tx.PutRecord(retentionBucket, rp.Name, rp)
	})
}

// register adds the retention endpoints: list, create, show, update,
// delete, and runs (a garbage collection applying the policies, or some
// of them).
func (p *policies) register(api *adminapi.API, g *gcRunner) {
	api.Handle("GET /api/v1/retention", func(*http.Request) (int, any, error) {
		all, err := p.all()
		return http.StatusOK, all, err
	})
	api.Handle("POST /api/v1/retention", func(r *http.Request) (int, any, error) {
		var rp retention.Policy
		if err := adminapi.Decode(r, &rp); err != nil {
			return 0, nil, err
		}
		if err := p.put(rp, false); err != nil {
			return 0, nil, err
		}
		out, err := p.get(rp.Name)
		return http.StatusCreated, out, err
	})
	api.Handle("GET /api/v1/retention/{name}", func(r *http.Request) (int, any, error) {
		out, err := p.get(r.PathValue("name"))
		return http.StatusOK, out, err
	})
	api.Handle("PATCH /api/v1/retention/{name}", func(r *http.Request) (int, any, error) {
		var u RetentionUpdate
		if err := adminapi.Decode(r, &u); err != nil {
			return 0, nil, err
		}
		rp, err := p.get(r.PathValue("name"))
		if err != nil {
			return 0, nil, err
		}
		u.apply(&rp)
		if err := p.put(rp, true); err != nil {
			return 0, nil, err
		}
		out, err := p.get(rp.Name)
		return http.StatusOK, out, err
	})
	api.Handle("DELETE /api/v1/retention/{name}", func(r *http.Request) (int, any, error) {
		name := r.PathValue("name")
		if slices.ContainsFunc(p.fixed, func(f retention.Policy) bool { return f.Name == name }) {
			return 0, nil, fmt.Errorf("%w: retention policy %q is set in the configuration file: remove it there", auth.ErrInvalid, name)
		}
		err := p.store.Update(func(tx *auth.Tx) error { return tx.DeleteRecord(retentionBucket, name) })
		return http.StatusNoContent, nil, err
	})
	api.Handle("POST /api/v1/retention/runs", func(r *http.Request) (int, any, error) {
		var req RetentionRunRequest
		if r.ContentLength != 0 {
			if err := adminapi.Decode(r, &req); err != nil {
				return 0, nil, err
			}
		}
		for _, name := range req.Policies {
			if _, err := p.get(name); err != nil {
				return 0, nil, err
			}
		}
		return g.respondRun(r.Context(), gcRun{dry: req.DryRun, trigger: "retention", only: req.Policies})
	})
}

// protection returns what the site must keep whatever its policies say:
// at a connected registry, every tag of its sync scope (its parent
// decides there, and sync removes what the parent no longer tags) and the
// images of the staging releases assigned to it or to its descendants;
// at a parent, the images of staging releases not yet installed
// everywhere.
func protection(ep *edgeParts, fleet *controlplane.Service) func(context.Context) (gc.Protection, error) {
	return func(context.Context) (gc.Protection, error) {
		prot := gc.Protection{Tags: map[string][]string{}, Manifests: map[string][]digest.Digest{}}
		add := func(im protocol.StagedImage) {
			if im.Tag != "" {
				prot.Tags[im.Repository] = append(prot.Tags[im.Repository], im.Tag)
			}
			if im.Digest != "" {
				prot.Manifests[im.Repository] = append(prot.Manifests[im.Repository], im.Digest)
			}
		}
		if ep != nil {
			scope, images := ep.edge.Keep()
			prot.Repositories = scope
			for _, im := range images {
				add(im)
			}
		}
		jobs, err := fleet.Jobs()
		if err != nil {
			return gc.Protection{}, err
		}
		for _, j := range jobs {
			if j.State == protocol.StageInstalled {
				continue
			}
			for _, im := range j.Images {
				add(im)
			}
		}
		return prot, nil
	}
}
