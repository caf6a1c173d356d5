package ui

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/outpost-registry/outpost/internal/auth"
)

// cookieName is the session cookie. The session itself stays on the
// server: the cookie holds only its random ID.
const cookieName = "outpost_session"

// maxSessionAge bounds a session however active it is.
const maxSessionAge = 12 * time.Hour

// maxSessions bounds the sessions held; the oldest go first.
const maxSessions = 10000

// session is a signed-in browser.
type session struct {
	id      string
	csrf    string
	name    string
	admin   bool
	created time.Time
	seen    time.Time
}

// principal is the caller as the auth service knows it: a disabled or
// deleted token loses its access at once, as at the registry API.
func (s *session) principal() *auth.Principal {
	return &auth.Principal{Name: s.name, Admin: s.admin}
}

type sessions struct {
	mu   sync.Mutex
	m    map[string]*session
	idle time.Duration
	now  func() time.Time
}

func newSessions(idle time.Duration, now func() time.Time) *sessions {
	return &sessions{m: map[string]*session{}, idle: idle, now: now}
}

func randomID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session for p.
func (ss *sessions) create(p *auth.Principal) *session {
	now := ss.now()
	s := &session{id: randomID(), csrf: randomID(), name: p.Name, admin: p.Admin, created: now, seen: now}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.m) >= maxSessions {
		ss.evict(now)
	}
	ss.m[s.id] = s
	return s
}

// evict drops expired sessions, and the oldest one if none had expired.
func (ss *sessions) evict(now time.Time) {
	var oldest *session
	for id, s := range ss.m {
		if ss.expired(s, now) {
			delete(ss.m, id)
			continue
		}
		if oldest == nil || s.created.Before(oldest.created) {
			oldest = s
		}
	}
	if len(ss.m) >= maxSessions && oldest != nil {
		delete(ss.m, oldest.id)
	}
}

func (ss *sessions) expired(s *session, now time.Time) bool {
	return now.Sub(s.seen) > ss.idle || now.Sub(s.created) > maxSessionAge
}

// get returns the live session of r's cookie, or nil, and marks it seen.
func (ss *sessions) get(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	now := ss.now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.m[c.Value]
	if s == nil {
		return nil
	}
	if ss.expired(s, now) {
		delete(ss.m, s.id)
		return nil
	}
	s.seen = now
	return s
}

func (ss *sessions) end(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, id)
}

// setCookie sends the session cookie: HttpOnly, SameSite=Strict, Secure
// under TLS, scoped to the dashboard, expiring with the session's bound.
func setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: value, Path: Prefix, MaxAge: maxAge,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}

// errCSRF refuses a form without the session's token.
var errCSRF = errors.New("the form's CSRF token is missing or wrong: reload the page and try again")

// checkCSRF compares the form's token with the session's.
func checkCSRF(r *http.Request, s *session) error {
	got := r.PostFormValue("csrf")
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) != 1 {
		return errCSRF
	}
	return nil
}

// handler is a page for a signed-in caller.
type handler func(w http.ResponseWriter, r *http.Request, s *session)

// signedIn serves h to a signed-in caller whose token is still enabled,
// after the CSRF check for writes; others go to the sign-in page.
func (u *UI) signedIn(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := u.sessions.get(r)
		if s != nil && !s.admin && !u.tokenEnabled(s.name) {
			u.sessions.end(s.id)
			s = nil
		}
		if s == nil {
			if r.Method != http.MethodGet {
				u.fail(w, r, nil, http.StatusUnauthorized, "Your session has ended: sign in again.")
				return
			}
			http.Redirect(w, r, Prefix+"login?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			if err := checkCSRF(r, s); err != nil {
				u.o.Logger.Warn("dashboard refused a form without its CSRF token", "path", r.URL.Path, "user", s.name, "peer", r.RemoteAddr)
				u.fail(w, r, s, http.StatusForbidden, err.Error())
				return
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		h(w, r, s)
	}
}

// admin is signedIn for the admin only: 403 for a token.
func (u *UI) admin(h handler) http.HandlerFunc {
	return u.signedIn(func(w http.ResponseWriter, r *http.Request, s *session) {
		if !s.admin {
			u.fail(w, r, s, http.StatusForbidden, "This page is for the admin only: a token sees the repositories its scope map allows.")
			return
		}
		h(w, r, s)
	})
}

func (u *UI) tokenEnabled(name string) bool {
	t, err := u.o.Auth.Store().Token(name)
	return err == nil && t.Status == auth.StatusEnabled
}

func (u *UI) loginPage(w http.ResponseWriter, r *http.Request) {
	if s := u.sessions.get(r); s != nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	u.render(w, r, nil, http.StatusOK, "login", loginData{Next: safeNext(r.URL.Query().Get("next"))})
}

type loginData struct {
	Next, User, Error string
}

// login checks the credentials as the registry and the CLI do (Basic
// credentials through the auth service, with its failed-login limits) and
// starts a session with a fresh ID.
func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	user, pw, next := r.PostFormValue("username"), r.PostFormValue("password"), safeNext(r.PostFormValue("next"))
	w.Header().Set("Cache-Control", "no-store")
	check := r.Clone(r.Context())
	check.Header = http.Header{}
	check.SetBasicAuth(user, pw)
	p, err := u.o.Auth.Authenticate(check)
	if err == nil && (p == nil || user == "") {
		err = &auth.Denial{Status: http.StatusUnauthorized, Message: "invalid username or password"}
	}
	if err != nil {
		status, msg := http.StatusUnauthorized, "Invalid username or password."
		var d *auth.Denial
		if errors.As(err, &d) && d.Status == http.StatusTooManyRequests {
			status, msg = d.Status, "Too many failed sign-ins: wait a moment and try again."
			for k, v := range d.Header() {
				w.Header()[k] = v
			}
		}
		u.render(w, r, nil, status, "login", loginData{Next: next, User: user, Error: msg})
		return
	}
	if old := u.sessions.get(r); old != nil {
		u.sessions.end(old.id)
	}
	s := u.sessions.create(p)
	setCookie(w, r, s.id, int(maxSessionAge/time.Second))
	u.o.Logger.Info("dashboard sign-in", "user", s.name, "peer", r.RemoteAddr)
	if !s.admin && next == Prefix+"fleet" {
		next = Prefix + "repositories"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (u *UI) logout(w http.ResponseWriter, r *http.Request, s *session) {
	u.sessions.end(s.id)
	setCookie(w, r, "", -1)
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}

// safeNext keeps a redirect target inside the dashboard.
func safeNext(next string) string {
	if len(next) > len(Prefix) && next[:len(Prefix)] == Prefix && !containsAny(next, "\\\r\n") && (len(next) < 2 || next[1] != '/') {
		return next
	}
	return Prefix + "fleet"
}
