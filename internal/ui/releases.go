package ui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// releaseSite is one site's progress on a release.
type releaseSite struct {
	Name string
	protocol.SiteProgress
	BytesTotal int64
	Complete   bool
}

type releaseView struct {
	Job        *protocol.StagingJob
	Sites      []releaseSite
	BytesTotal int64
	Done       int
}

type releasesData struct {
	Releases []releaseView
}

func (u *UI) releases(w http.ResponseWriter, r *http.Request, s *session) {
	jobs, err := u.o.Fleet.Jobs()
	if err != nil {
		u.internal(w, r, s, err)
		return
	}
	slices.SortFunc(jobs, func(a, b *protocol.StagingJob) int { return b.Created.Compare(a.Created) })
	var d releasesData
	for _, j := range jobs {
		d.Releases = append(d.Releases, u.releaseView(r.Context(), j))
	}
	u.render(w, r, s, http.StatusOK, "releases", d)
}

type releaseData struct {
	releaseView
	Check *checkResult
}

func (u *UI) release(w http.ResponseWriter, r *http.Request, s *session) {
	j, ok := u.job(w, r, s)
	if !ok {
		return
	}
	u.render(w, r, s, http.StatusOK, "release", releaseData{releaseView: u.releaseView(r.Context(), j)})
}

// releaseProgress answers the release page's polling with the sites'
// progress alone.
func (u *UI) releaseProgress(w http.ResponseWriter, r *http.Request, s *session) {
	j, ok := u.job(w, r, s)
	if !ok {
		return
	}
	u.renderPart(w, s, "release", "progress", releaseData{releaseView: u.releaseView(r.Context(), j)})
}

func (u *UI) job(w http.ResponseWriter, r *http.Request, s *session) (*protocol.StagingJob, bool) {
	name := r.PathValue("name")
	j, err := u.o.Fleet.Job(name)
	if errors.Is(err, auth.ErrNotFound) {
		u.fail(w, r, s, http.StatusNotFound, "No release "+name+".")
		return nil, false
	}
	if err != nil {
		u.internal(w, r, s, err)
		return nil, false
	}
	return j, true
}

// releaseView adds the bytes to stage, from the images as the root holds
// them (sites report bytes done, not the total).
func (u *UI) releaseView(ctx context.Context, j *protocol.StagingJob) releaseView {
	v := releaseView{Job: j}
	admin := &auth.Principal{Name: auth.AdminUser, Admin: true}
	for _, im := range j.Images {
		if _, img, err := u.o.Catalog.Manifest(ctx, admin, im.Repository, im.Digest.String()); err == nil {
			v.BytesTotal += img.Size
		}
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range j.Sites {
			if !yield(n) {
				return
			}
		}
	})
	for _, n := range names {
		p := j.Sites[n]
		rs := releaseSite{Name: n, SiteProgress: p, BytesTotal: max(v.BytesTotal, p.Bytes)}
		rs.Complete = (p.State == protocol.StageStaged || p.InstalledAt != nil) && p.ImagesDone >= p.ImagesTotal
		if rs.Complete {
			v.Done++
		}
		v.Sites = append(v.Sites, rs)
	}
	return v
}

// checkResult is the answer of the completeness check.
type checkResult struct {
	OK       bool
	Problems []string
	Checked  int
}

// checkRelease checks that the release is complete: every image is still
// at the root with its whole graph (manifests, child manifests, blobs and
// referrers in the repository), and every site reports it staged with
// every image done. A site's own content is checked at the site with
// `outpost stage check --job`.
func (u *UI) checkRelease(w http.ResponseWriter, r *http.Request, s *session) {
	j, ok := u.job(w, r, s)
	if !ok {
		return
	}
	res := &checkResult{}
	for _, im := range j.Images {
		res.Checked++
		if err := u.o.Catalog.Complete(r.Context(), im.Repository, im.Digest); err != nil {
			res.Problems = append(res.Problems, fmt.Sprintf("%s at this registry: %v", im.Reference, err))
		}
	}
	v := u.releaseView(r.Context(), j)
	for _, site := range v.Sites {
		if site.RetiredAt != nil || site.Complete {
			continue
		}
		msg := fmt.Sprintf("%s: %s, %d of %d images", site.Name, site.State, site.ImagesDone, site.ImagesTotal)
		if site.Reason != "" {
			msg += ": " + site.Reason
		}
		res.Problems = append(res.Problems, msg)
	}
	res.OK = len(res.Problems) == 0
	u.o.Logger.Info("dashboard checked a release", "job", j.Name, "ok", res.OK, "user", s.name)
	u.render(w, r, s, http.StatusOK, "release", releaseData{releaseView: v, Check: res})
}
