package controlplane

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/adminapi"
	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/oci"
	"github.com/outpost-registry/outpost/internal/storage"
)

// stagingBucket keeps staging jobs in the identity store, so that creating
// one widens the targets' sync scope maps in the same transaction.
const stagingBucket = "staging"

// Stage states.
const (
	StagePending = "Pending"
	StageStaging = "Staging"
	StageStaged  = "Staged"
	StageFailed  = "Failed"
	// StageInstalled is a release the operator marked installed at every
	// target (`stage mark-installed`).
	StageInstalled = "Installed"
)

// StagedImage is one image of a job, resolved to a digest at creation (a
// job naming an image the root does not have is refused; a site fails an
// image removed from its parent since, with the reason).
type StagedImage struct {
	Reference  string `json:"reference"`
	Repository string `json:"repository"`
	// Tag is set when the image was named by tag: sites publish it.
	Tag    string        `json:"tag,omitempty"`
	Digest digest.Digest `json:"digest,omitempty"`
}

// SiteProgress is a site's state for a job.
type SiteProgress struct {
	State       string     `json:"state"`
	ImagesDone  int        `json:"imagesDone"`
	ImagesTotal int        `json:"imagesTotal"`
	Bytes       int64      `json:"bytes"`
	Reason      string     `json:"reason,omitempty"`
	Updated     *time.Time `json:"lastUpdate,omitempty"`
	// The fields below are kept by the parent, not reported by the site:
	// when the site first reported the job Staged, when the operator
	// marked it installed there, and when a later installed release
	// retired it there (the parent no longer assigns it to the site, so
	// the site's GC may reclaim its images).
	StagedAt    *time.Time `json:"stagedTime,omitempty"`
	InstalledAt *time.Time `json:"installedTime,omitempty"`
	RetiredAt   *time.Time `json:"retiredTime,omitempty"`
	// Nodes is the node stage of a pre-pull job, as the site's node
	// agents reported it (nil for a job without --pre-pull).
	Nodes *NodeRollup `json:"nodes,omitempty"`
}

// StagingJob asks connected registries to pre-download images.
type StagingJob struct {
	Name          string        `json:"name"`
	Targets       []string      `json:"connectedRegistries"`
	Images        []StagedImage `json:"images"`
	RespectWindow bool          `json:"respectWindow"`
	// PrePull adds the node stage: once a site has staged the job, its
	// node agents pull the images into each node's container runtime.
	PrePull bool `json:"prePull,omitempty"`
	// NodeSelector limits the node stage to nodes with these labels.
	NodeSelector map[string]string       `json:"nodeSelector,omitempty"`
	Created      time.Time               `json:"creationDate"`
	Sites        map[string]SiteProgress `json:"sites"`
	// State is the release's lifecycle, derived from its sites on every
	// read: Staging, Staged (every site complete), Failed (a site failed)
	// or Installed (marked installed at every site).
	State string `json:"state"`
}

// ReleaseState derives a job's lifecycle state from its sites.
func (j *StagingJob) ReleaseState() string {
	staged, installed := true, true
	for _, p := range j.Sites {
		switch {
		case p.State == StageFailed:
			return StageFailed
		case p.State != StageStaged:
			staged = false
		}
		installed = installed && p.InstalledAt != nil
	}
	switch {
	case installed && len(j.Sites) > 0:
		return StageInstalled
	case staged:
		return StageStaged
	}
	return StageStaging
}

// active reports whether the parent assigns the job to site: it targets
// the site and no later installed release retired it there.
func (j *StagingJob) active(site string) bool {
	p, ok := j.Sites[site]
	return ok && p.RetiredAt == nil && slices.Contains(j.Targets, site)
}

// StagingRequest is the body of POST /api/v1/staging.
type StagingRequest struct {
	Name          string   `json:"name"`
	Targets       []string `json:"connectedRegistries"`
	Images        []string `json:"images"`
	RespectWindow bool     `json:"respectWindow,omitempty"`
	// PrePull and NodeSelector: see StagingJob.
	PrePull      bool              `json:"prePull,omitempty"`
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
}

// StageTask is a job as a site sees it in its configuration.
type StageTask struct {
	Job           string        `json:"job"`
	Images        []StagedImage `json:"images"`
	RespectWindow bool          `json:"respectWindow,omitempty"`
	// PrePull is set when the site's own nodes pre-pull the job (a
	// gateway staging a job for its descendants only does not).
	PrePull      bool              `json:"prePull,omitempty"`
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
}

// StageReport is a site's progress on a job, sent with heartbeats.
type StageReport struct {
	Job string `json:"job"`
	SiteProgress
}

// ParseImageRef splits "repo:tag" or "repo@digest" (no registry host).
func ParseImageRef(ref string) (repo, tagOrDigest string, err error) {
	if i := strings.LastIndexByte(ref, '@'); i > 0 {
		repo, tagOrDigest = ref[:i], ref[i+1:]
		if _, err := oci.ParseDigest(tagOrDigest); err != nil {
			return "", "", fmt.Errorf("%w: image %q: %w", auth.ErrInvalid, ref, err)
		}
	} else {
		i := strings.LastIndexByte(ref, ':')
		if i <= 0 || strings.Contains(ref[i:], "/") {
			return "", "", fmt.Errorf("%w: image %q: want repository:tag or repository@digest", auth.ErrInvalid, ref)
		}
		repo, tagOrDigest = ref[:i], ref[i+1:]
		if err := oci.ValidateTag(tagOrDigest); err != nil {
			return "", "", fmt.Errorf("%w: image %q: %w", auth.ErrInvalid, ref, err)
		}
	}
	if err := oci.ValidateName(repo); err != nil {
		return "", "", fmt.Errorf("%w: image %q: %w", auth.ErrInvalid, ref, err)
	}
	return repo, tagOrDigest, nil
}

func allJobs(tx *auth.Tx) ([]*StagingJob, error) {
	var out []*StagingJob
	err := tx.Records(stagingBucket, func(_ string, raw []byte) error {
		j := &StagingJob{}
		if err := json.Unmarshal(raw, j); err != nil {
			return err
		}
		out = append(out, j)
		return nil
	})
	return out, err
}

// stagedRepos lists the repositories jobs stage on a connected registry.
func stagedRepos(jobs []*StagingJob, name string) []string {
	var out []string
	for _, j := range jobs {
		if !j.active(name) {
			continue
		}
		for _, im := range j.Images {
			if !slices.Contains(out, im.Repository) {
				out = append(out, im.Repository)
			}
		}
	}
	return out
}

// CreateStaging resolves the images against meta and stores the job.
func (s *Service) CreateStaging(req StagingRequest, resolve func(repo, ref string) (digest.Digest, error)) (*StagingJob, error) {
	if err := ValidateName(req.Name); err != nil {
		return nil, err
	}
	if len(req.Targets) == 0 || len(req.Images) == 0 {
		return nil, fmt.Errorf("%w: a job needs at least one connected registry and one image", auth.ErrInvalid)
	}
	if err := validNodeSelector(req.NodeSelector); err != nil {
		return nil, err
	}
	if len(req.NodeSelector) > 0 && !req.PrePull {
		return nil, fmt.Errorf("%w: nodeSelector: only for a pre-pull job (prePull)", auth.ErrInvalid)
	}
	job := &StagingJob{Name: req.Name, Targets: req.Targets, RespectWindow: req.RespectWindow, PrePull: req.PrePull,
		NodeSelector: req.NodeSelector, Sites: map[string]SiteProgress{}}
	var missing []string
	for _, ref := range req.Images {
		repo, r, err := ParseImageRef(ref)
		if err != nil {
			return nil, err
		}
		im := StagedImage{Reference: ref, Repository: repo}
		if !oci.IsDigest(r) {
			im.Tag = r
		}
		d, err := resolve(repo, r)
		if err != nil {
			missing = append(missing, ref)
			continue
		}
		im.Digest = d
		job.Images = append(job.Images, im)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: images: not found at this registry, so no site could stage them: %s", auth.ErrInvalid, strings.Join(missing, ", "))
	}
	err := s.store.Update(func(tx *auth.Tx) error {
		var existing StagingJob
		if tx.Record(stagingBucket, job.Name, &existing) == nil {
			return fmt.Errorf("%w: staging job %q", auth.ErrExists, job.Name)
		}
		for _, t := range job.Targets {
			if _, err := getCR(tx, t); err != nil {
				return fmt.Errorf("%w: connectedRegistries: %q does not exist", auth.ErrInvalid, t)
			}
			job.Sites[t] = SiteProgress{State: StagePending, ImagesTotal: len(job.Images)}
			if job.PrePull {
				p := job.Sites[t]
				p.Nodes = &NodeRollup{}
				job.Sites[t] = p
			}
		}
		job.Created = tx.Now()
		if err := tx.PutRecord(stagingBucket, job.Name, job); err != nil {
			return err
		}
		return rebuildSyncScopeMaps(tx)
	})
	if err != nil {
		return nil, err
	}
	return job, nil
}

// Jobs lists the staging jobs.
func (s *Service) Jobs() ([]*StagingJob, error) {
	var out []*StagingJob
	err := s.store.Records(stagingBucket, func(_ string, raw []byte) error {
		j := &StagingJob{}
		if err := json.Unmarshal(raw, j); err != nil {
			return err
		}
		j.State = j.ReleaseState()
		out = append(out, j)
		return nil
	})
	slices.SortStableFunc(out, func(a, b *StagingJob) int { return a.Created.Compare(b.Created) })
	return out, err
}

// Job returns one job.
func (s *Service) Job(name string) (*StagingJob, error) {
	j := &StagingJob{}
	if err := s.store.Record(stagingBucket, name, j); err != nil {
		return nil, fmt.Errorf("staging job %q: %w", name, auth.ErrNotFound)
	}
	j.State = j.ReleaseState()
	return j, nil
}

// DeleteStaging removes a job and narrows the sync scopes again.
func (s *Service) DeleteStaging(name string) error {
	return s.store.Update(func(tx *auth.Tx) error {
		if err := tx.DeleteRecord(stagingBucket, name); err != nil {
			return err
		}
		return rebuildSyncScopeMaps(tx)
	})
}

// InstallRequest is the body of POST /api/v1/staging/{name}/installed.
type InstallRequest struct {
	// Targets are the sites the release is installed at (default: every
	// target of the job).
	Targets []string `json:"connectedRegistries,omitempty"`
	// Keep is how many releases stay assigned to each site, the installed
	// one included (default DefaultKeep).
	Keep int `json:"keep,omitempty"`
}

// DefaultKeep keeps the installed release and the one installed before
// it, for rollback.
const DefaultKeep = 2

// MarkInstalled records that release name is installed at the sites of
// req (each must be Staged), and retires there every release created
// before it except the Keep-1 most recently installed ones: the parent no
// longer assigns them to the site, which releases their images to the
// site's GC. Releases created after it are untouched.
func (s *Service) MarkInstalled(name string, req InstallRequest) (*StagingJob, error) {
	if req.Keep == 0 {
		req.Keep = DefaultKeep
	}
	if req.Keep < 1 {
		return nil, fmt.Errorf("%w: keep %d: at least 1 (the installed release)", auth.ErrInvalid, req.Keep)
	}
	var out *StagingJob
	err := s.store.Update(func(tx *auth.Tx) error {
		jobs, err := allJobs(tx)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(jobs, func(j *StagingJob) bool { return j.Name == name })
		if i < 0 {
			return fmt.Errorf("staging job %q: %w", name, auth.ErrNotFound)
		}
		job := jobs[i]
		sites := req.Targets
		if len(sites) == 0 {
			sites = job.Targets
		}
		now := tx.Now()
		for _, site := range sites {
			p, ok := job.Sites[site]
			switch {
			case !ok:
				return fmt.Errorf("%w: connectedRegistries: release %q does not target %q", auth.ErrInvalid, name, site)
			case p.State != StageStaged:
				return fmt.Errorf("%w: release %q is %s at %q, not Staged: run outpost stage wait first", auth.ErrInvalid, name, p.State, site)
			}
			if p.InstalledAt == nil {
				p.InstalledAt = &now
			}
			job.Sites[site] = p
			retire(jobs, job, site, req.Keep, now)
		}
		for _, j := range jobs {
			if err := tx.PutRecord(stagingBucket, j.Name, j); err != nil {
				return err
			}
		}
		job.State = job.ReleaseState()
		out = job
		return rebuildSyncScopeMaps(tx)
	})
	return out, err
}

// retire marks, at site, the releases created before installed as
// retired, except the keep-1 installed there most recently.
func retire(jobs []*StagingJob, installed *StagingJob, site string, keep int, now time.Time) {
	var older []*StagingJob
	for _, j := range jobs {
		if j != installed && j.active(site) && j.Created.Before(installed.Created) {
			older = append(older, j)
		}
	}
	// Installed ones first, most recent first; then the never installed.
	slices.SortStableFunc(older, func(a, b *StagingJob) int {
		ia, ib := a.Sites[site].InstalledAt, b.Sites[site].InstalledAt
		switch {
		case ia != nil && ib != nil:
			return ib.Compare(*ia)
		case ia != nil:
			return -1
		case ib != nil:
			return 1
		}
		return 0
	})
	for n, j := range older {
		if n < keep-1 && j.Sites[site].InstalledAt != nil {
			continue
		}
		p := j.Sites[site]
		p.RetiredAt = &now
		j.Sites[site] = p
	}
}

// tasksFor returns the jobs that target any of names: a connected
// registry's own, and those of its descendants, which a gateway stages as
// their source.
func (s *Service) tasksFor(names ...string) []StageTask {
	var out []StageTask
	for _, j := range s.jobsFor(names...) {
		// Only the registry's own nodes pre-pull: a job staged here only
		// as the source of a descendant stays off this site's nodes.
		own := j.PrePull && j.active(names[0])
		t := StageTask{Job: j.Name, Images: j.Images, RespectWindow: j.RespectWindow, PrePull: own}
		if own {
			t.NodeSelector = j.NodeSelector
		}
		out = append(out, t)
	}
	return out
}

// jobsFor returns the jobs that target any of names.
func (s *Service) jobsFor(names ...string) []*StagingJob {
	if len(names) == 0 {
		return nil
	}
	jobs, err := s.Jobs()
	if err != nil {
		return nil
	}
	var out []*StagingJob
	for _, j := range jobs {
		if slices.ContainsFunc(names, j.active) {
			out = append(out, j)
		}
	}
	return out
}

// SiteReport is a descendant's progress on a job, relayed by its gateway.
type SiteReport struct {
	Site string `json:"site"`
	StageReport
}

// ReplicateStaging installs, at a gateway, the jobs its parent hands down
// for its descendants, keeping the progress its children reported to it
// and removing jobs its parent no longer lists.
func (s *Service) ReplicateStaging(jobs []*StagingJob) error {
	return s.store.Update(func(tx *auth.Tx) error {
		keep := map[string]bool{}
		for _, j := range jobs {
			keep[j.Name] = true
			var old StagingJob
			if tx.Record(stagingBucket, j.Name, &old) == nil {
				for site, p := range old.Sites {
					if cur, ok := j.Sites[site]; ok && p.Updated != nil {
						// The parent decides installation and retirement.
						p.InstalledAt, p.RetiredAt = cur.InstalledAt, cur.RetiredAt
						j.Sites[site] = p
					}
				}
			}
			if err := tx.PutRecord(stagingBucket, j.Name, j); err != nil {
				return err
			}
		}
		existing, err := allJobs(tx)
		if err != nil {
			return err
		}
		for _, j := range existing {
			if !keep[j.Name] {
				if err := tx.DeleteRecord(stagingBucket, j.Name); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// DescendantStaging returns the progress the gateway's children reported
// on the jobs handed down, for the gateway's heartbeat.
func (s *Service) DescendantStaging() []SiteReport {
	jobs, err := s.Jobs()
	if err != nil {
		return nil
	}
	var out []SiteReport
	for _, j := range jobs {
		for site, p := range j.Sites {
			if p.Updated != nil {
				out = append(out, SiteReport{Site: site, StageReport: StageReport{Job: j.Name, SiteProgress: p}})
			}
		}
	}
	slices.SortFunc(out, func(a, b SiteReport) int { return strings.Compare(a.Job+"\x00"+a.Site, b.Job+"\x00"+b.Site) })
	return out
}

// noteFinished signals StagingFinished when a report ends a job.
func (s *Service) noteFinished(reports []StageReport) {
	for _, r := range reports {
		if r.State == StageStaged || r.State == StageFailed {
			select {
			case s.staged <- struct{}{}:
			default:
			}
			return
		}
	}
}

// recordStaging stores the progress reports of a site (inside tx).
func recordStaging(tx *auth.Tx, site string, reports []StageReport) error {
	for _, r := range reports {
		j := &StagingJob{}
		if tx.Record(stagingBucket, r.Job, j) != nil {
			continue
		}
		if _, ok := j.Sites[site]; !ok {
			continue
		}
		now := tx.Now()
		r.Updated = &now
		old := j.Sites[site]
		r.StagedAt, r.InstalledAt, r.RetiredAt = old.StagedAt, old.InstalledAt, old.RetiredAt
		if r.State == StageStaged && r.StagedAt == nil {
			r.StagedAt = &now
		}
		j.Sites[site] = r.SiteProgress
		if err := tx.PutRecord(stagingBucket, j.Name, j); err != nil {
			return err
		}
	}
	return nil
}

// RegisterStaging adds the /api/v1/staging routes.
func RegisterStaging(api *adminapi.API, s *Service, meta storage.Metadata) {
	api.Handle("GET /api/v1/staging", func(*http.Request) (int, any, error) {
		jobs, err := s.Jobs()
		if jobs == nil {
			jobs = []*StagingJob{}
		}
		return http.StatusOK, jobs, err
	})
	api.Handle("POST /api/v1/staging", func(r *http.Request) (int, any, error) {
		var req StagingRequest
		if err := adminapi.Decode(r, &req); err != nil {
			return 0, nil, err
		}
		resolve := func(repo, ref string) (digest.Digest, error) {
			m, err := meta.GetManifest(r.Context(), repo, ref)
			if err != nil {
				return "", err
			}
			return m.Digest, nil
		}
		job, err := s.CreateStaging(req, resolve)
		return http.StatusCreated, job, err
	})
	api.Handle("GET /api/v1/staging/{name}", func(r *http.Request) (int, any, error) {
		j, err := s.Job(r.PathValue("name"))
		return http.StatusOK, j, err
	})
	api.Handle("POST /api/v1/staging/{name}/installed", func(r *http.Request) (int, any, error) {
		var req InstallRequest
		if err := adminapi.Decode(r, &req); err != nil {
			return 0, nil, err
		}
		j, err := s.MarkInstalled(r.PathValue("name"), req)
		return http.StatusOK, j, err
	})
	api.Handle("DELETE /api/v1/staging/{name}", func(r *http.Request) (int, any, error) {
		return http.StatusNoContent, nil, s.DeleteStaging(r.PathValue("name"))
	})
}
