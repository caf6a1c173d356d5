package syncer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/outpost-registry/outpost/internal/atomicfile"
)

// Cursors keeps the change-feed position of each repository in a small
// JSON file, written atomically after each applied change.
type Cursors struct {
	mu   sync.Mutex
	path string
	m    map[string]uint64
}

// OpenCursors loads the cursor file at path (absent: all zero).
func OpenCursors(path string) (*Cursors, error) {
	c := &Cursors{path: path, m: map[string]uint64{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read sync cursors: %w", err)
	}
	if err := json.Unmarshal(b, &c.m); err != nil {
		return nil, fmt.Errorf("parse sync cursors %s: %w", path, err)
	}
	return c, nil
}

// Get returns the cursor of repo.
func (c *Cursors) Get(repo string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[repo]
}

// Set stores the cursor of repo.
func (c *Cursors) Set(repo string, v uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[repo] == v {
		return nil
	}
	c.m[repo] = v
	if c.path == "" {
		return nil
	}
	b, err := json.Marshal(c.m)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(c.path, b, 0o600); err != nil {
		return fmt.Errorf("write sync cursors: %w", err)
	}
	return nil
}
