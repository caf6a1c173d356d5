package controlplane

import (
	"net/http"
	"time"

	"github.com/outpost-registry/outpost/internal/adminapi"
)

// CreateRequest is the body of POST /api/v1/connected-registries.
type CreateRequest struct {
	Name           string   `json:"name"`
	Mode           string   `json:"mode,omitempty"`
	Parent         string   `json:"parent,omitempty"`
	Repositories   []string `json:"repositories"`
	ClientTokens   []string `json:"clientTokens,omitempty"`
	SyncSchedule   string   `json:"syncSchedule,omitempty"`
	SyncWindow     string   `json:"syncWindow,omitempty"`
	SyncMessageTTL string   `json:"syncMessageTtl,omitempty"`
	LogLevel       string   `json:"logLevel,omitempty"`
	Notifications  []string `json:"notifications,omitempty"`
}

// CreateAnswer is the answer of POST /api/v1/connected-registries: the
// connected registry, and notes on what was changed besides it (an
// existing sync token re-bound or enabled).
type CreateAnswer struct {
	*ConnectedRegistry
	Notes []string `json:"notes,omitempty"`
}

// SettingsRequest is the body of POST …/{name}/settings.
type SettingsRequest struct {
	ParentProtocol   string `json:"parentProtocol"`
	GeneratePassword int    `json:"generatePassword,omitempty"`
}

// view hides what the API never shows and marks registries that missed
// two heartbeats Offline.
func view(c *ConnectedRegistry) *ConnectedRegistry {
	v := *c
	v.ActivationID = ""
	interval := 30 * time.Second
	if v.HeartbeatSeconds > 0 {
		interval = time.Duration(v.HeartbeatSeconds) * time.Second
	}
	liveness(&v, interval, time.Now())
	return &v
}

// Register adds the connected-registry routes to the management API.
func Register(api *adminapi.API, s *Service) {
	api.Handle("GET /api/v1/connected-registries", func(r *http.Request) (int, any, error) {
		list, err := s.List(r.URL.Query().Get("parent"))
		out := make([]*ConnectedRegistry, 0, len(list))
		for _, c := range list {
			out = append(out, view(c))
		}
		return http.StatusOK, out, err
	})
	api.Handle("POST /api/v1/connected-registries", func(r *http.Request) (int, any, error) {
		var req CreateRequest
		if err := adminapi.Decode(r, &req); err != nil {
			return 0, nil, err
		}
		c := &ConnectedRegistry{
			Name: req.Name, Parent: req.Parent, Repositories: req.Repositories, ClientTokens: req.ClientTokens,
			SyncSchedule: req.SyncSchedule, SyncWindow: req.SyncWindow, SyncMessageTTL: req.SyncMessageTTL,
			LogLevel: req.LogLevel, Notifications: req.Notifications,
		}
		if req.Mode != "" {
			m, err := ParseMode(req.Mode)
			if err != nil {
				return 0, nil, err
			}
			c.Mode = m
		}
		out, notes, err := s.Create(c)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusCreated, CreateAnswer{ConnectedRegistry: view(out), Notes: notes}, nil
	})
	api.Handle("GET /api/v1/connected-registries/{name}", func(r *http.Request) (int, any, error) {
		c, err := s.Get(r.PathValue("name"))
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, view(c), nil
	})
	api.Handle("PATCH /api/v1/connected-registries/{name}", func(r *http.Request) (int, any, error) {
		var u Update
		if err := adminapi.Decode(r, &u); err != nil {
			return 0, nil, err
		}
		c, err := s.UpdateSettings(r.PathValue("name"), u)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, view(c), nil
	})
	api.Handle("DELETE /api/v1/connected-registries/{name}", func(r *http.Request) (int, any, error) {
		return http.StatusNoContent, nil, s.Delete(r.PathValue("name"), r.URL.Query().Get("cleanup") == "true")
	})
	api.Handle("POST /api/v1/connected-registries/{name}/deactivate", func(r *http.Request) (int, any, error) {
		c, err := s.Deactivate(r.PathValue("name"))
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, view(c), nil
	})
	api.Handle("POST /api/v1/connected-registries/{name}/settings", func(r *http.Request) (int, any, error) {
		var req SettingsRequest
		if err := adminapi.Decode(r, &req); err != nil {
			return 0, nil, err
		}
		// Children of this registry reach it at its configured login
		// server; without one, at the address the caller used.
		endpoint := s.loginServer
		if endpoint == "" {
			endpoint = r.Host
		}
		out, err := s.GetSettings(r.PathValue("name"), req.ParentProtocol, req.GeneratePassword, endpoint)
		return http.StatusOK, out, err
	})
	api.Handle("POST /api/v1/connected-registries/{name}/node-token", func(r *http.Request) (int, any, error) {
		var req NodeTokenRequest
		if err := adminapi.Decode(r, &req); err != nil {
			return 0, nil, err
		}
		out, err := s.CreateNodeToken(r.PathValue("name"), req)
		return http.StatusOK, out, err
	})
	api.Handle("GET /api/v1/connected-registries/{name}/client-tokens", func(r *http.Request) (int, any, error) {
		tokens, err := s.ClientTokens(r.PathValue("name"))
		if err != nil {
			return 0, nil, err
		}
		out := make([]adminapi.TokenView, 0, len(tokens))
		for _, t := range tokens {
			out = append(out, adminapi.ViewToken(t))
		}
		return http.StatusOK, out, nil
	})
}
