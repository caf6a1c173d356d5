package adminapi

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/controlplane"
	"github.com/outpost-registry/outpost/internal/oci"
	"github.com/outpost-registry/outpost/internal/protocol"
	"github.com/outpost-registry/outpost/internal/storage"
)

// RegisterFleet adds the routes of the fleet a parent manages: connected
// registries, the gateway routes their edges call (activation,
// configuration, heartbeats), the change feed they sync from, and staging
// jobs. The wire types are protocol's; the logic is controlplane's.
func (a *API) RegisterFleet(s *controlplane.Service, meta storage.Metadata) {
	a.registerConnected(s)
	a.registerGateway(s)
	a.RegisterChanges(meta)
	a.registerStaging(s, meta)
}

// Register adds the connected-registry routes to the management API.
func (a *API) registerConnected(s *controlplane.Service) {
	a.Handle("GET /api/v1/connected-registries", func(r *http.Request) (int, any, error) {
		list, err := s.List(r.URL.Query().Get("parent"))
		out := make([]*protocol.ConnectedRegistry, 0, len(list))
		for _, c := range list {
			out = append(out, controlplane.View(c))
		}
		return http.StatusOK, out, err
	})
	a.Handle("POST /api/v1/connected-registries", func(r *http.Request) (int, any, error) {
		var req protocol.CreateRequest
		if err := decode(r, &req); err != nil {
			return 0, nil, err
		}
		c := &protocol.ConnectedRegistry{
			Name: req.Name, Parent: req.Parent, Repositories: req.Repositories, ClientTokens: req.ClientTokens,
			SyncSchedule: req.SyncSchedule, SyncWindow: req.SyncWindow, SyncMessageTTL: req.SyncMessageTTL,
			LogLevel: req.LogLevel, Notifications: req.Notifications,
		}
		if req.Mode != "" {
			m, err := protocol.ParseMode(req.Mode)
			if err != nil {
				return 0, nil, err
			}
			c.Mode = m
		}
		out, notes, err := s.Create(c)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusCreated, protocol.CreateAnswer{ConnectedRegistry: controlplane.View(out), Notes: notes}, nil
	})
	a.Handle("GET /api/v1/connected-registries/{name}", func(r *http.Request) (int, any, error) {
		c, err := s.Get(r.PathValue("name"))
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, controlplane.View(c), nil
	})
	a.Handle("PATCH /api/v1/connected-registries/{name}", func(r *http.Request) (int, any, error) {
		var u protocol.Update
		if err := decode(r, &u); err != nil {
			return 0, nil, err
		}
		c, err := s.UpdateSettings(r.PathValue("name"), u)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, controlplane.View(c), nil
	})
	a.Handle("DELETE /api/v1/connected-registries/{name}", func(r *http.Request) (int, any, error) {
		return http.StatusNoContent, nil, s.Delete(r.PathValue("name"), r.URL.Query().Get("cleanup") == "true")
	})
	a.Handle("POST /api/v1/connected-registries/{name}/deactivate", func(r *http.Request) (int, any, error) {
		c, err := s.Deactivate(r.PathValue("name"))
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, controlplane.View(c), nil
	})
	a.Handle("POST /api/v1/connected-registries/{name}/settings", func(r *http.Request) (int, any, error) {
		var req protocol.SettingsRequest
		if err := decode(r, &req); err != nil {
			return 0, nil, err
		}
		// Children of this registry reach it at its configured login
		// server; without one, at the address the caller used.
		out, err := s.GetSettings(r.PathValue("name"), req.ParentProtocol, req.GeneratePassword, r.Host)
		return http.StatusOK, out, err
	})
	a.Handle("GET /api/v1/connected-registries/{name}/client-tokens", func(r *http.Request) (int, any, error) {
		tokens, err := s.ClientTokens(r.PathValue("name"))
		if err != nil {
			return 0, nil, err
		}
		out := make([]auth.TokenView, 0, len(tokens))
		for _, t := range tokens {
			out = append(out, auth.ViewToken(t))
		}
		return http.StatusOK, out, nil
	})
	a.Handle("POST /api/v1/connected-registries/{name}/node-token", func(r *http.Request) (int, any, error) {
		var req protocol.NodeTokenRequest
		if err := decode(r, &req); err != nil {
			return 0, nil, err
		}
		out, err := s.CreateNodeToken(r.PathValue("name"), req)
		return http.StatusOK, out, err
	})
}

// gatewayAuthz lets a sync token use the gateway routes of its connected
// registry (and, for a parent gateway, of its descendants).
func gatewayAuthz(svc *auth.Service, op string) Authz {
	return func(r *http.Request, p *auth.Principal) error {
		if p == nil {
			return &auth.Denial{Status: http.StatusUnauthorized, Message: "authentication required", Challenge: `Basic realm="outpost"`}
		}
		if !svc.AllowedGateway(p, auth.Action("gateway/"+r.PathValue("name")+"/"+op)) {
			return &auth.Denial{Status: http.StatusForbidden, Message: fmt.Sprintf("%s may not use gateway/%s/%s", p.Name, r.PathValue("name"), op)}
		}
		return nil
	}
}

// RegisterGateway adds the routes edges call: activation, configuration and
// heartbeats, authorized by the gateway actions of their sync token.
func (a *API) registerGateway(s *controlplane.Service) {
	a.HandleWith("POST /api/v1/gateway/{name}/activate", gatewayAuthz(a.svc, "config/write"), func(r *http.Request) (int, any, error) {
		var req protocol.ActivateRequest
		if err := decode(r, &req); err != nil {
			return 0, nil, err
		}
		cfg, err := s.Activate(r.PathValue("name"), req)
		return http.StatusOK, cfg, err
	})
	a.HandleWith("GET /api/v1/gateway/{name}/config", gatewayAuthz(a.svc, "config/read"), func(r *http.Request) (int, any, error) {
		cfg, err := s.Config(r.PathValue("name"))
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, cfg, nil
	})
	a.HandleWith("POST /api/v1/gateway/{name}/heartbeat", gatewayAuthz(a.svc, "message/write"), func(r *http.Request) (int, any, error) {
		var hb protocol.Heartbeat
		if err := decode(r, &hb); err != nil {
			return 0, nil, err
		}
		cfg, err := s.RecordHeartbeat(r.PathValue("name"), hb)
		return http.StatusOK, cfg, err
	})
	a.Handle("POST /api/v1/connected-registries/{name}/resync", func(r *http.Request) (int, any, error) {
		if err := s.RequestResync(r.PathValue("name")); err != nil {
			return 0, nil, err
		}
		return http.StatusAccepted, map[string]string{"status": "resync requested; the connected registry starts a run at its next heartbeat"}, nil
	})
}

// RegisterChanges adds GET /api/v1/changes?repository=R&since=N&n=M, the
// ordered tag change feed of a repository, for any caller that may
// metadata/read it.
func (a *API) RegisterChanges(meta storage.Metadata) {
	authz := func(r *http.Request, p *auth.Principal) error {
		repo := r.URL.Query().Get("repository")
		if !a.svc.Allowed(p, repo, auth.MetadataRead) {
			if p == nil {
				return &auth.Denial{Status: http.StatusUnauthorized, Message: "authentication required", Challenge: `Basic realm="outpost"`}
			}
			return &auth.Denial{Status: http.StatusForbidden, Message: p.Name + " may not read the metadata of " + repo}
		}
		return nil
	}
	a.HandleWith("GET /api/v1/changes", authz, func(r *http.Request) (int, any, error) {
		q := r.URL.Query()
		repo := q.Get("repository")
		if err := oci.ValidateName(repo); err != nil {
			return 0, nil, fmt.Errorf("%w: repository: %w", auth.ErrInvalid, err)
		}
		since, n := uint64(0), 1000
		if v := q.Get("since"); v != "" {
			var err error
			if since, err = strconv.ParseUint(v, 10, 64); err != nil {
				return 0, nil, fmt.Errorf("%w: since %q", auth.ErrInvalid, v)
			}
		}
		if v := q.Get("n"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 10000 {
				return 0, nil, fmt.Errorf("%w: n %q: 1 to 10000", auth.ErrInvalid, v)
			}
		}
		changes, head, err := meta.Changes(r.Context(), repo, since, n)
		if errors.Is(err, storage.ErrRepositoryUnknown) {
			return http.StatusOK, protocol.ChangesResponse{Repository: repo, Changes: []storage.Change{}, Next: since, Head: 0}, nil
		}
		if err != nil {
			return 0, nil, err
		}
		next := since
		if len(changes) > 0 {
			next = changes[len(changes)-1].Seq
		}
		return http.StatusOK, protocol.ChangesResponse{Repository: repo, Changes: changes, Next: next, Head: head}, nil
	})
}

// RegisterStaging adds the /api/v1/staging routes.
func (a *API) registerStaging(s *controlplane.Service, meta storage.Metadata) {
	a.Handle("GET /api/v1/staging", func(*http.Request) (int, any, error) {
		jobs, err := s.Jobs()
		if jobs == nil {
			jobs = []*protocol.StagingJob{}
		}
		return http.StatusOK, jobs, err
	})
	a.Handle("POST /api/v1/staging", func(r *http.Request) (int, any, error) {
		var req protocol.StagingRequest
		if err := decode(r, &req); err != nil {
			return 0, nil, err
		}
		resolve := func(repo, ref string) (digest.Digest, error) {
			m, err := meta.GetManifest(r.Context(), repo, ref)
			if err != nil {
				return "", err
			}
			return m.Digest, nil
		}
		job, err := s.CreateStaging(req, resolve)
		return http.StatusCreated, job, err
	})
	a.Handle("GET /api/v1/staging/{name}", func(r *http.Request) (int, any, error) {
		j, err := s.Job(r.PathValue("name"))
		return http.StatusOK, j, err
	})
	a.Handle("POST /api/v1/staging/{name}/installed", func(r *http.Request) (int, any, error) {
		var req protocol.InstallRequest
		if err := decode(r, &req); err != nil {
			return 0, nil, err
		}
		j, err := s.MarkInstalled(r.PathValue("name"), req)
		return http.StatusOK, j, err
	})
	a.Handle("DELETE /api/v1/staging/{name}", func(r *http.Request) (int, any, error) {
		return http.StatusNoContent, nil, s.DeleteStaging(r.PathValue("name"))
	})
}
