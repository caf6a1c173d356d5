package server

import (
	"context"
	"time"
)

// uploadPurgeAge is how long a client upload session may stay idle before
// it is removed as abandoned (the OCI distribution spec lets a registry
// expire upload sessions); a client resuming later starts over.
const uploadPurgeAge = 24 * time.Hour

// uploadPurgeInterval separates purges while serving.
const uploadPurgeInterval = time.Hour

// purgeUploads removes upload sessions idle for uploadPurgeAge and, at
// start-up, the sync engine's partial downloads, which it never resumes
// after a restart (verified blobs are committed and stay).
func (s *Server) purgeUploads(ctx context.Context, startup bool) {
	n, bytes, err := s.blobs.PurgeUploads(ctx, time.Now().Add(-uploadPurgeAge), startup)
	if n > 0 {
		s.log.Info("removed abandoned upload sessions", "sessions", n, "bytes", bytes, "max_idle", uploadPurgeAge.String(), "startup", startup)
	}
	if err != nil {
		s.log.Warn("purge upload sessions", "err", err)
	}
}

// purgeLoop purges abandoned upload sessions every uploadPurgeInterval
// until ctx ends.
func (s *Server) purgeLoop(ctx context.Context) {
	t := time.NewTicker(uploadPurgeInterval)
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
