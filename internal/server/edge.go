package server

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/outpost-registry/outpost/internal/adminapi"
	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/controlplane"
	"github.com/outpost-registry/outpost/internal/edge"
	"github.com/outpost-registry/outpost/internal/protocol"
	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/syncer"
)

// edgeParts are what a connected registry adds to the server.
type edgeParts struct {
	engine *syncer.Engine
	edge   *edge.Edge
	name   string
}

// newEdge builds the sync engine and edge runtime when cfg names a parent
// (a connection string or a generic parent URL); it returns nil otherwise.
func newEdge(cfg config.Config, s *Server, blobs storage.BlobStore, uploads storage.Uploads, meta storage.Metadata, version string, fleet *controlplane.Service) (*edgeParts, error) {
	ps, err := parentSettingsOf(cfg, true)
	if err != nil || ps == nil {
		return nil, err
	}
	popts, name, sync, static := ps.popts, ps.name, ps.sync, ps.static
	popts.Metrics = s.metrics
	parent, err := syncer.NewParent(popts)
	if err != nil {
		return nil, err
	}
	cursors, err := syncer.OpenCursors(filepath.Join(cfg.Data, "sync-cursors.json"))
	if err != nil {
		return nil, err
	}
	engine := syncer.NewEngine(syncer.Options{
		Parent: parent, Blobs: blobs, Uploads: uploads, Metadata: meta, Logger: s.log,
		Concurrency: cfg.Sync.Concurrency, BandwidthLimit: int64(cfg.Sync.BandwidthLimit),
		ChangeFeed: static == nil, Cursors: cursors, ManifestMaxBytes: int64(cfg.Limits.ManifestMaxBytes),
		Metrics: s.metrics, OnDemandTimeout: time.Duration(cfg.Sync.OnDemandTimeout),
	})
	outboxCursors, err := syncer.OpenCursors(filepath.Join(cfg.Data, "outbox-cursors.json"))
	if err != nil {
		return nil, err
	}
	login := cfg.LoginServer
	if login == "" {
		login = loginServerFromAddr(cfg.Addr)
	}
	var setLogLevel func(string) error
	if s.logLevel != nil {
		setLogLevel = s.logLevel.Set
	}
	ed, err := edge.New(edge.Options{
		Name: name, SyncToken: sync, Parent: parent, Engine: engine, Identity: s.identity, Metadata: meta, DataDir: cfg.Data,
		Logger: s.log, Version: version, LoginServer: login, Heartbeat: time.Duration(cfg.Sync.HeartbeatInterval), Static: static,
		OutboxCursors: outboxCursors, MessageTTL: time.Duration(cfg.Sync.MessageTTL), Fleet: fleet,
		SetLogLevel: setLogLevel, Volume: s.volume, PrePullNodes: cfg.Sync.PrePullNodes,
	})

	if err != nil {
		return nil, err
	}
	s.metrics.registerEdge(engine.Pending, ed.OutboxCounts)
	s.metrics.registerNodes(ed.NodeStats)
	return &edgeParts{engine: engine, edge: ed, name: name}, nil
}

// loginServerFromAddr turns a listening address into one clients can use.
func loginServerFromAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return net.JoinHostPort(host, port)
}

// registerStatus adds GET /api/v1/status: the edge's sync state, or the
// root's role.
func registerStatus(api *adminapi.API, ep *edgeParts) {
	api.Handle("GET /api/v1/status", func(*http.Request) (int, any, error) {
		if ep == nil {
			return http.StatusOK, map[string]string{"role": "root"}, nil
		}
		return http.StatusOK, ep.edge.Status(), nil
	})
}

// registerNodes adds the routes of a site's node agents (pre-pull):
//
//	GET    /api/v1/nodes/jobs              the pre-pull jobs this site has staged
//	POST   /api/v1/nodes/{node}/lease      take or renew a pull slot
//	DELETE /api/v1/nodes/{node}/lease      give it back
//	PUT    /api/v1/nodes/{node}/jobs/{job} the node's progress on a job
//
// They take the site's node token (a token whose scope map grants
// gateway/<site>/nodes/write) or the admin; a root has no node stage.
func registerNodes(api *adminapi.API, svc *auth.Service, ep *edgeParts) {
	authz := func(r *http.Request, p *auth.Principal) error {
		if p == nil {
			return &auth.Denial{Status: http.StatusUnauthorized, Message: "authentication required", Challenge: auth.BasicChallenge}
		}
		if ep == nil || ep.edge.Name() == "" {
			return &auth.Denial{Status: http.StatusForbidden, Message: "only a connected registry has node agents: use the admin"}
		}
		a := auth.Action("gateway/" + ep.edge.Name() + "/nodes/write")
		if !svc.AllowedGateway(p, a) {
			return &auth.Denial{Status: http.StatusForbidden, Message: fmt.Sprintf("%s may not use %s: give the node agents the site's node token", p.Name, a)}
		}
		return nil
	}
	noEdge := fmt.Errorf("%w: this registry is not a connected registry: it has no pre-pull jobs", auth.ErrNotFound)
	api.HandleWith("GET /api/v1/nodes/jobs", authz, func(*http.Request) (int, any, error) {
		if ep == nil {
			return 0, nil, noEdge
		}
		return http.StatusOK, ep.edge.NodeJobs(), nil
	})
	api.HandleWith("POST /api/v1/nodes/{node}/lease", authz, func(r *http.Request) (int, any, error) {
		if ep == nil {
			return 0, nil, noEdge
		}
		l, err := ep.edge.AcquireNodeLease(r.PathValue("node"))
		return http.StatusOK, l, err
	})
	api.HandleWith("DELETE /api/v1/nodes/{node}/lease", authz, func(r *http.Request) (int, any, error) {
		if ep == nil {
			return 0, nil, noEdge
		}
		return http.StatusNoContent, nil, ep.edge.ReleaseNodeLease(r.PathValue("node"))
	})
	api.HandleWith("PUT /api/v1/nodes/{node}/jobs/{job}", authz, func(r *http.Request) (int, any, error) {
		if ep == nil {
			return 0, nil, noEdge
		}
		var p protocol.NodeProgress
		if err := adminapi.Decode(r, &p); err != nil {
			return 0, nil, err
		}
		p.Node = r.PathValue("node")
		return http.StatusNoContent, nil, ep.edge.ReportNode(protocol.NodeReport{Job: r.PathValue("job"), NodeProgress: p})
	})
}

// readOnlyDenial refuses local writes at a ReadOnly connected registry.
func readOnlyDenial() error {
	return &auth.Denial{Status: http.StatusForbidden, Message: "this connected registry is read-only: push to its parent instead"}
}
