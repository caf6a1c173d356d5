package ui

import (
	"errors"
	"net/http"
	"slices"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/controlplane"
	"github.com/outpost-registry/outpost/internal/protocol"
)

type siteData struct {
	Row      siteRow
	Children []string
	Tokens   []auth.TokenView
	Jobs     []siteJob
	Events   []protocol.Event
	Runs     []protocol.SyncResult
	Notice   string
}

// siteJob is a release as one site sees it.
type siteJob struct {
	Name     string
	Progress protocol.SiteProgress
	Images   int
}

func (u *UI) site(w http.ResponseWriter, r *http.Request, s *session) {
	d, ok := u.siteData(w, r, s)
	if !ok {
		return
	}
	if r.URL.Query().Get("resync") == "requested" {
		d.Notice = "Resync requested: the site runs a sync at its next heartbeat."
	}
	u.render(w, r, s, http.StatusOK, "site", d)
}

func (u *UI) siteData(w http.ResponseWriter, r *http.Request, s *session) (*siteData, bool) {
	name := r.PathValue("name")
	c, err := u.o.Fleet.Get(name)
	if errors.Is(err, auth.ErrNotFound) {
		u.fail(w, r, s, http.StatusNotFound, "No connected registry "+name+".")
		return nil, false
	}
	if err != nil {
		u.internal(w, r, s, err)
		return nil, false
	}
	d := &siteData{Row: classify(controlplane.View(c), u.o.Now())}
	d.Events = slices.Clone(c.Events)
	slices.Reverse(d.Events)
	if kids, err := u.o.Fleet.List(name); err == nil {
		for _, k := range kids {
			d.Children = append(d.Children, k.Name)
		}
		slices.Sort(d.Children)
	}
	if d.Runs, err = u.o.Fleet.SyncHistory(name); err != nil {
		u.internal(w, r, s, err)
		return nil, false
	}
	if len(d.Runs) == 0 && c.LastSyncResult != nil {
		d.Runs = []protocol.SyncResult{*c.LastSyncResult}
	}
	tokens, err := u.o.Fleet.ClientTokens(name)
	if err != nil {
		u.internal(w, r, s, err)
		return nil, false
	}
	for _, t := range tokens {
		d.Tokens = append(d.Tokens, auth.ViewToken(t))
	}
	jobs, err := u.o.Fleet.Jobs()
	if err != nil {
		u.internal(w, r, s, err)
		return nil, false
	}
	for _, j := range jobs {
		if p, ok := j.Sites[name]; ok {
			d.Jobs = append(d.Jobs, siteJob{Name: j.Name, Progress: p, Images: len(j.Images)})
		}
	}
	return d, true
}

func (u *UI) resync(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("name")
	if err := u.o.Fleet.RequestResync(name); err != nil {
		if errors.Is(err, auth.ErrNotFound) {
			u.fail(w, r, s, http.StatusNotFound, "No connected registry "+name+".")
			return
		}
		u.internal(w, r, s, err)
		return
	}
	u.o.Logger.Info("dashboard requested a resync", "site", name, "user", s.name)
	http.Redirect(w, r, Prefix+"sites/"+name+"?resync=requested", http.StatusSeeOther)
}
