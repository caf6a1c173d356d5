package auth

import (
	"strings"
	"sync"
	"time"
)

// limiter slows down and then refuses clients that keep failing to log
// in, counting failures per client address and per account name. Keys
// starting with "ip:" lock only after many more failures than account keys,
// because many honest clients can share one address (NAT, a node).
type limiter struct {
	mu         sync.Mutex
	entries    map[string]*failures
	window     time.Duration // failures older than this are forgotten
	slowFrom   int           // failures after which answers are delayed
	lockFrom   int           // failures of an account after which it is refused
	lockFromIP int           // failures of an address after which it is refused
	lockout    time.Duration
	maxKeys    int
}

type failures struct {
	count  int
	first  time.Time
	locked time.Time // refused until then
}

func newLimiter() *limiter {
	return &limiter{entries: map[string]*failures{}, window: 10 * time.Minute, slowFrom: 3, lockFrom: 10, lockFromIP: 100, lockout: time.Minute, maxKeys: 100000}
}

// check returns how long the caller must wait before it may try again,
// zero when it may try now, for every key given.
func (l *limiter) check(now time.Time, keys ...string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	for _, k := range keys {
		f, ok := l.entries[k]
		if !ok {
			continue
		}
		if now.Sub(f.first) > l.window && !now.Before(f.locked) {
			delete(l.entries, k)
			continue
		}
		if d := f.locked.Sub(now); d > wait {
			wait = d
		}
	}
	return wait
}

// fail records a failure for every key and returns the delay to impose on
// this answer.
func (l *limiter) fail(now time.Time, keys ...string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.entries) > l.maxKeys {
		for k, f := range l.entries {
			if now.Sub(f.first) > l.window && !now.Before(f.locked) {
				delete(l.entries, k)
			}
		}
	}
	var delay time.Duration
	for _, k := range keys {
		f, ok := l.entries[k]
		if !ok || (now.Sub(f.first) > l.window && !now.Before(f.locked)) {
			f = &failures{first: now}
			l.entries[k] = f
		}
		f.count++
		lockAt := l.lockFrom
		if strings.HasPrefix(k, "ip:") {
			lockAt = l.lockFromIP
		}
		if f.count >= lockAt {
			f.locked = now.Add(l.lockout)
		}
		if f.count > l.slowFrom {
			d := time.Duration(f.count-l.slowFrom) * 200 * time.Millisecond
			delay = max(delay, min(d, 2*time.Second))
		}
	}
	return delay
}

// succeed forgets the failures of an account after a good login.
func (l *limiter) succeed(key string) {
	l.mu.Lock()
	if f, ok := l.entries[key]; ok && f.locked.IsZero() {
		delete(l.entries, key)
	}
	l.mu.Unlock()
}
