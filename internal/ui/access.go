package ui

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/outpost-registry/outpost/internal/auth"
)

type accessData struct {
	Tokens    []auth.TokenView
	ScopeMaps []*auth.ScopeMap
	Actions   []auth.Action
	// Secret is a password just generated, shown this once.
	Secret *auth.TokenView
	Notice string
	Error  string
}

func (u *UI) accessData() accessData {
	store := u.o.Auth.Store()
	d := accessData{ScopeMaps: store.ScopeMaps(), Actions: auth.RepositoryActions}
	for _, t := range store.Tokens() {
		d.Tokens = append(d.Tokens, auth.ViewToken(t))
	}
	slices.SortFunc(d.Tokens, func(a, b auth.TokenView) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(d.ScopeMaps, func(a, b *auth.ScopeMap) int { return strings.Compare(a.Name, b.Name) })
	return d
}

func (u *UI) access(w http.ResponseWriter, r *http.Request, s *session) {
	d := u.accessData()
	d.Notice = map[string]string{
		"enabled":  "Token enabled.",
		"disabled": "Token disabled: its sign-ins and pulls are refused from now on.",
		"scopemap": "Scope map created.",
	}[r.URL.Query().Get("done")]
	u.render(w, r, s, http.StatusOK, "access", d)
}

// accessResult shows the access page after a change: with the error, or
// with a password that must be shown once (so no redirect).
func (u *UI) accessResult(w http.ResponseWriter, r *http.Request, s *session, secret *auth.TokenView, err error) {
	d := u.accessData()
	status := http.StatusOK
	if err != nil {
		status = http.StatusBadRequest
		switch {
		case errors.Is(err, auth.ErrNotFound):
			status = http.StatusNotFound
		case errors.Is(err, auth.ErrExists), errors.Is(err, auth.ErrInUse), errors.Is(err, auth.ErrReadOnly):
			status = http.StatusConflict
		case !errors.Is(err, auth.ErrInvalid):
			u.internal(w, r, s, err)
			return
		}
		d.Error = err.Error()
	}
	d.Secret = secret
	u.render(w, r, s, status, "access", d)
}

// grants reads repository patterns (one per line or comma-separated) and
// the checked actions of a form.
func grants(r *http.Request) ([]auth.RepositoryGrant, error) {
	var actions []auth.Action
	for _, a := range r.PostForm["action"] {
		act, err := auth.ParseAction(a)
		if err != nil {
			return nil, err
		}
		actions = append(actions, act)
	}
	var out []auth.RepositoryGrant
	for _, repo := range strings.FieldsFunc(r.PostFormValue("repositories"), func(c rune) bool { return c == ',' || c == '\n' || c == '\r' || c == ' ' }) {
		out = append(out, auth.RepositoryGrant{Repository: repo, Actions: slices.Clone(actions)})
	}
	if len(out) > 0 && len(actions) == 0 {
		return nil, errors.Join(auth.ErrInvalid, errors.New("choose at least one action"))
	}
	return out, nil
}

func (u *UI) createToken(w http.ResponseWriter, r *http.Request, s *session) {
	req := auth.TokenRequest{Name: strings.TrimSpace(r.PostFormValue("name")), ScopeMap: r.PostFormValue("scopeMap")}
	var err error
	if req.Repositories, err = grants(r); err != nil {
		u.accessResult(w, r, s, nil, err)
		return
	}
	if len(req.Repositories) > 0 {
		req.ScopeMap = ""
	}
	if days := r.PostFormValue("expirationInDays"); days != "" {
		if req.ExpirationInDays, err = strconv.Atoi(days); err != nil {
			u.accessResult(w, r, s, nil, errors.Join(auth.ErrInvalid, errors.New("expiration: a number of days")))
			return
		}
	}
	view, err := u.o.Auth.Store().CreateToken(req)
	u.showSecret(w, r, s, view, err, "dashboard created a token")
}

// showSecret shows the passwords of a token just created or regenerated,
// once, or the error.
func (u *UI) showSecret(w http.ResponseWriter, r *http.Request, s *session, view auth.TokenView, err error, event string) {
	if err != nil {
		u.accessResult(w, r, s, nil, err)
		return
	}
	u.o.Logger.Info(event, "token", view.Name, "user", s.name)
	u.accessResult(w, r, s, &view, nil)
}

func (u *UI) setTokenStatus(w http.ResponseWriter, r *http.Request, s *session) {
	status := r.PostFormValue("status")
	view, err := u.o.Auth.Store().UpdateToken(r.PathValue("name"), auth.TokenUpdate{Status: status})
	if err != nil {
		u.accessResult(w, r, s, nil, err)
		return
	}
	u.o.Logger.Info("dashboard changed a token's status", "token", view.Name, "status", string(view.Status), "user", s.name)
	http.Redirect(w, r, Prefix+"access?done="+string(view.Status), http.StatusSeeOther)
}

func (u *UI) regeneratePassword(w http.ResponseWriter, r *http.Request, s *session) {
	var view auth.TokenView
	err := u.o.Auth.Store().Update(func(tx *auth.Tx) error {
		var err error
		view, err = tx.GenerateCredential(r.PathValue("name"), auth.PasswordName(r.PostFormValue("password")), 0)
		return err
	})
	u.showSecret(w, r, s, view, err, "dashboard regenerated a token password")
}

func (u *UI) createScopeMap(w http.ResponseWriter, r *http.Request, s *session) {
	req := auth.ScopeMapRequest{Name: strings.TrimSpace(r.PostFormValue("name")), Description: strings.TrimSpace(r.PostFormValue("description"))}
	var err error
	if req.Repositories, err = grants(r); err != nil {
		u.accessResult(w, r, s, nil, err)
		return
	}
	if _, err := u.o.Auth.Store().CreateScopeMap(req); err != nil {
		u.accessResult(w, r, s, nil, err)
		return
	}
	u.o.Logger.Info("dashboard created a scope map", "scope_map", req.Name, "user", s.name)
	http.Redirect(w, r, Prefix+"access?done=scopemap", http.StatusSeeOther)
}
