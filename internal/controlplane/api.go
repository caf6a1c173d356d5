package controlplane

import (
	"time"

	"github.com/outpost-registry/outpost/internal/protocol"
)

// View hides what the API never shows and marks registries that missed
// two heartbeats Offline.
func View(c *protocol.ConnectedRegistry) *protocol.ConnectedRegistry {
	v := *c
	v.ActivationID = ""
	interval := 30 * time.Second
	if v.HeartbeatSeconds > 0 {
		interval = time.Duration(v.HeartbeatSeconds) * time.Second
	}
	liveness(&v, interval, time.Now())
	return &v
}
