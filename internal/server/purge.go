package server

import (
	"context"
	"time"

	"github.com/outpost-registry/outpost/internal/config"
)

// purgeInterval separates purges of expired upload sessions while
// serving: a quarter of limits.uploadMaxAge, at most an hour, so that a
// session outlives its idle age by at most a quarter of it (an hour).
func purgeInterval(maxAge time.Duration) time.Duration {
	return min(max(maxAge/4, 100*time.Millisecond), time.Hour)
}

// purgeUploads removes upload sessions idle for limits.uploadMaxAge (the
// OCI distribution spec lets a registry expire them; a client resuming
// later starts over) and, at start-up, the sync engine's partial
// downloads, which it never resumes after a restart (verified blobs are
// committed and stay). The sessions removed stop counting against the
// session limits.
//
// On shared engines the purge runs on one replica at a time, and never
// removes the sync engine's sessions: another replica may be using them.
func (s *Server) purgeUploads(ctx context.Context, startup bool) {
	maxAge := s.uploadMaxAge()
	syncToo := startup && s.engines.local != nil
	ran, err := s.engines.runJob(ctx, "purge-uploads", func(ctx context.Context) {
		n, bytes, err := s.engines.purger.PurgeUploads(ctx, time.Now().Add(-maxAge), syncToo)
		if n > 0 {
			s.log.Info("removed abandoned upload sessions", "sessions", n, "bytes", bytes, "max_idle", maxAge.String(), "startup", startup)
		}
		if err != nil {
			s.log.Warn("purge upload sessions", "err", err)
		}
	})
	if err != nil {
		s.log.Warn("purge upload sessions", "err", err)
	} else if !ran {
		s.log.Debug("upload sessions are being purged by another replica")
	}
	s.api.SweepUploads(ctx)
}

// remoteSweepInterval is how often a replica on a shared blob store
// forgets the sessions it counts that another replica committed or
// cancelled: a chunked push that started here and ended elsewhere counts
// against the session limits here until then.
const remoteSweepInterval = 30 * time.Second

// purgeLoop purges expired upload sessions every purgeInterval until ctx
// ends, and on a shared blob store sweeps the session counts more often.
func (s *Server) purgeLoop(ctx context.Context) {
	t := time.NewTicker(purgeInterval(s.uploadMaxAge()))
	defer t.Stop()
	var sweep <-chan time.Time
	if s.engines.local == nil {
		st := time.NewTicker(remoteSweepInterval)
		defer st.Stop()
		sweep = st.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.purgeUploads(ctx, false)
		case <-sweep:
			s.api.SweepUploads(ctx)
		}
	}
}

// uploadMaxAge is limits.uploadMaxAge, or its default in a configuration
// without defaults (never zero, which would purge every session).
func (s *Server) uploadMaxAge() time.Duration {
	if d := time.Duration(s.cfg.Limits.UploadMaxAge); d > 0 {
		return d
	}
	return time.Duration(config.Default().Limits.UploadMaxAge)
}
