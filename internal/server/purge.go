package server

import (
	"context"
	"time"
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
func (s *Server) purgeUploads(ctx context.Context, startup bool) {
	maxAge := time.Duration(s.cfg.Limits.UploadMaxAge)
	n, bytes, err := s.blobs.PurgeUploads(ctx, time.Now().Add(-maxAge), startup)
	if n > 0 {
		s.log.Info("removed abandoned upload sessions", "sessions", n, "bytes", bytes, "max_idle", maxAge.String(), "startup", startup)
	}
	if err != nil {
		s.log.Warn("purge upload sessions", "err", err)
	}
	s.api.SweepUploads(ctx)
}

// purgeLoop purges expired upload sessions every purgeInterval until ctx
// ends.
func (s *Server) purgeLoop(ctx context.Context) {
	t := time.NewTicker(purgeInterval(time.Duration(s.cfg.Limits.UploadMaxAge)))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.purgeUploads(ctx, false)
		}
	}
}
