package registryapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/outpost-registry/outpost/internal/storage"
)

// Identifier is an optional ability of an Authorizer: AuthorizeAs decides
// like Authorize and also names the credential the request carries (""
// for none), so that limits can be kept per credential.
type Identifier interface {
	AuthorizeAs(r *http.Request, access []Access) (credential string, err error)
}

// uploadRetryAfter is the Retry-After, in seconds, of a refused session:
// sessions close as the client's pushes finish, which takes seconds.
const uploadRetryAfter = "30"

// sessionOwner is who opened an upload session, and where.
type sessionOwner struct {
	credential, repo string
}

// sessionCounter counts open upload sessions per credential and per
// repository, so that one client cannot fill the disk with empty sessions
// (distribution spec § "Pushing blobs": a registry may refuse). A session
// is counted from its POST until it is committed, cancelled, or found gone
// by Sweep (expired). Sessions opened before a restart are counted again
// when their client next uses them.
type sessionCounter struct {
	perCredential, perRepository int

	mu     sync.Mutex
	open   map[string]sessionOwner // upload ID -> owner
	byCred map[string]int
	byRepo map[string]int
}

func newSessionCounter(perCredential, perRepository int) *sessionCounter {
	return &sessionCounter{
		perCredential: perCredential, perRepository: perRepository,
		open: map[string]sessionOwner{}, byCred: map[string]int{}, byRepo: map[string]int{},
	}
}

// reserve takes a place for a new session of o, or returns 429
// TOOMANYREQUESTS naming the limit reached. The place is given back with
// release, or bound to the session's ID with bind.
func (c *sessionCounter) reserve(o sessionOwner) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var msg string
	switch {
	case c.byCred[o.credential] >= c.perCredential:
		who := "anonymous callers have"
		if o.credential != "" {
			who = fmt.Sprintf("credential %q has", o.credential)
		}
		msg = fmt.Sprintf("%s reached the limit of %d open upload sessions; finish or cancel some, or retry later", who, c.perCredential)
	case c.byRepo[o.repo] >= c.perRepository:
		msg = fmt.Sprintf("repository %s has reached the limit of %d open upload sessions; retry later", o.repo, c.perRepository)
	default:
		c.byCred[o.credential]++
		c.byRepo[o.repo]++
		return nil
	}
	return &Error{Code: CodeTooManyRequests, Message: msg, Header: http.Header{"Retry-After": {uploadRetryAfter}}}
}

// release gives back a place taken by reserve.
func (c *sessionCounter) release(o sessionOwner) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dec(o)
}

func (c *sessionCounter) dec(o sessionOwner) {
	if c.byCred[o.credential]--; c.byCred[o.credential] <= 0 {
		delete(c.byCred, o.credential)
	}
	if c.byRepo[o.repo]--; c.byRepo[o.repo] <= 0 {
		delete(c.byRepo, o.repo)
	}
}

// bind records session id in the place reserved for o.
func (c *sessionCounter) bind(id string, o sessionOwner) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open[id] = o
}

// adopt counts session id, opened before a restart, for o without a limit
// check (it exists already). It reports whether the session was new to
// the counter.
func (c *sessionCounter) adopt(id string, o sessionOwner) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.open[id]; ok {
		return false
	}
	c.open[id] = o
	c.byCred[o.credential]++
	c.byRepo[o.repo]++
	return true
}

// close stops counting session id of repo; it reports whether it was
// counted. The repository must match: a request naming another
// repository's session must not free its place.
func (c *sessionCounter) close(id, repo string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.open[id]
	if !ok || o.repo != repo {
		return false
	}
	delete(c.open, id)
	c.dec(o)
	return true
}

// snapshot lists the counted sessions.
func (c *sessionCounter) snapshot() map[string]sessionOwner {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]sessionOwner, len(c.open))
	for id, o := range c.open {
		out[id] = o
	}
	return out
}

// authorizeAs authorizes an action on the route's repository and returns
// the owner a session opened by the request has.
func (h *Handler) authorizeAs(r *http.Request, rt Route, a Action) (sessionOwner, error) {
	access := []Access{{Repository: rt.Name, Action: a}}
	if id, ok := h.auth.(Identifier); ok {
		cred, err := id.AuthorizeAs(r, access)
		return sessionOwner{credential: cred, repo: rt.Name}, err
	}
	return sessionOwner{repo: rt.Name}, h.auth.Authorize(r, access)
}

// sessionUsed counts a session its client uses again after a restart.
func (h *Handler) sessionUsed(id string, o sessionOwner) {
	if h.sessions.adopt(id, o) {
		h.observer.UploadStarted()
	}
}

// sessionEnded stops counting a session that is gone: committed,
// cancelled, discarded or expired.
func (h *Handler) sessionEnded(id, repo string) {
	if h.sessions.close(id, repo) {
		h.observer.UploadEnded()
	}
}

// endIfGone stops counting the route's session when err says it is not an
// open session of the route's repository.
func (h *Handler) endIfGone(rt Route, err error) {
	if errors.Is(err, storage.ErrUploadUnknown) {
		h.sessionEnded(rt.Reference, rt.Name)
	}
}

// SweepUploads stops counting the upload sessions that no longer exist,
// such as those an expiry removed from storage, and returns how many.
// Call it after removing expired sessions, so that their places free up.
func (h *Handler) SweepUploads(ctx context.Context) int {
	n := 0
	for id, o := range h.sessions.snapshot() {
		if ctx.Err() != nil {
			break
		}
		if _, err := h.uploads.UploadSize(ctx, o.repo, id); errors.Is(err, storage.ErrUploadUnknown) {
			h.sessionEnded(id, o.repo)
			n++
		}
	}
	return n
}
