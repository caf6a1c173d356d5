package bundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/outpost-registry/outpost/internal/atomicfile"
)

// ErrRollback marks a bundle older than the one that last set a tag it
// would move: a replayed bundle must not roll a site back.
var ErrRollback = errors.New("bundle older than the one that set the tag")

// TagLog remembers, per repository:tag, when the bundle that last set it
// was made (<data>/bundle/tags.json).
type TagLog struct {
	path string
	mu   sync.Mutex
	set  map[string]time.Time
}

// OpenTagLog reads the log at path (none yet: empty).
func OpenTagLog(path string) (*TagLog, error) {
	l := &TagLog{path: path, set: map[string]time.Time{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read bundle tag log: %w", err)
	}
	if err := json.Unmarshal(b, &l.set); err != nil {
		return nil, fmt.Errorf("bundle tag log %s: %w", path, err)
	}
	return l, nil
}

// check refuses to move ref with a bundle made at created when a later
// bundle set it.
func (l *TagLog) check(ref string, created time.Time) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if last, ok := l.set[ref]; ok && last.After(created) {
		return fmt.Errorf("%w: %s was set by a bundle made %s; this one was made %s (a replayed or out-of-order bundle)", ErrRollback, ref, last.Format(time.RFC3339), created.Format(time.RFC3339))
	}
	return nil
}

// record notes that a bundle made at created set refs.
func (l *TagLog) record(refs []string, created time.Time) error {
	if l == nil || len(refs) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range refs {
		if created.After(l.set[r]) {
			l.set[r] = created
		}
	}
	b, err := json.Marshal(l.set)
	if err != nil {
		return fmt.Errorf("encode bundle tag log: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(l.path), 0o700); err != nil {
		return fmt.Errorf("create bundle directory: %w", err)
	}
	return atomicfile.Write(l.path, b, 0o600)
}
