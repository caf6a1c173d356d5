package controlplane

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/oci"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// stagingBucket keeps staging jobs in the identity store, so that creating
// one widens the targets' sync scope maps in the same transaction.
const stagingBucket = "staging"

func allJobs(tx *auth.Tx) ([]*protocol.StagingJob, error) {
	var out []*protocol.StagingJob
	err := tx.Records(stagingBucket, func(_ string, raw []byte) error {
		j := &protocol.StagingJob{}
		if err := json.Unmarshal(raw, j); err != nil {
			return err
		}
		out = append(out, j)
		return nil
	})
	return out, err
}

// stagedRepos lists the repositories jobs stage on a connected registry.
func stagedRepos(jobs []*protocol.StagingJob, name string) []string {
	var out []string
	for _, j := range jobs {
		if !j.AssignedTo(name) {
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
func (s *Service) CreateStaging(req protocol.StagingRequest, resolve func(repo, ref string) (digest.Digest, error)) (*protocol.StagingJob, error) {
	if err := protocol.ValidateName(req.Name); err != nil {
		return nil, err
	}
	if len(req.Targets) == 0 || len(req.Images) == 0 {
		return nil, fmt.Errorf("%w: a job needs at least one connected registry and one image", auth.ErrInvalid)
	}
	if err := protocol.ValidateNodeSelector(req.NodeSelector); err != nil {
		return nil, err
	}
	if len(req.NodeSelector) > 0 && !req.PrePull {
		return nil, fmt.Errorf("%w: nodeSelector: only for a pre-pull job (prePull)", auth.ErrInvalid)
	}
	job := &protocol.StagingJob{Name: req.Name, Targets: req.Targets, RespectWindow: req.RespectWindow, PrePull: req.PrePull,
		NodeSelector: req.NodeSelector, Sites: map[string]protocol.SiteProgress{}}
	var missing []string
	for _, ref := range req.Images {
		repo, r, err := protocol.ParseImageRef(ref)
		if err != nil {
			return nil, err
		}
		im := protocol.StagedImage{Reference: ref, Repository: repo}
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
		var existing protocol.StagingJob
		if tx.Record(stagingBucket, job.Name, &existing) == nil {
			return fmt.Errorf("%w: staging job %q", auth.ErrExists, job.Name)
		}
		for _, t := range job.Targets {
			if _, err := getCR(tx, t); err != nil {
				return fmt.Errorf("%w: connectedRegistries: %q does not exist", auth.ErrInvalid, t)
			}
			p := protocol.SiteProgress{State: protocol.StagePending, ImagesTotal: len(job.Images)}
			if job.PrePull {
				p.Nodes = &protocol.NodeRollup{}
			}
			job.Sites[t] = p
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
func (s *Service) Jobs() ([]*protocol.StagingJob, error) {
	var out []*protocol.StagingJob
	err := s.store.Records(stagingBucket, func(_ string, raw []byte) error {
		j := &protocol.StagingJob{}
		if err := json.Unmarshal(raw, j); err != nil {
			return err
		}
		j.State = j.ReleaseState()
		out = append(out, j)
		return nil
	})
	slices.SortStableFunc(out, func(a, b *protocol.StagingJob) int { return a.Created.Compare(b.Created) })
	return out, err
}

// Job returns one job.
func (s *Service) Job(name string) (*protocol.StagingJob, error) {
	j := &protocol.StagingJob{}
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

// MarkInstalled records that release name is installed at the sites of
// req (each must be Staged), and retires there every release created
// before it except the Keep-1 most recently installed ones: the parent no
// longer assigns them to the site, which releases their images to the
// site's GC. Releases created after it are untouched.
func (s *Service) MarkInstalled(name string, req protocol.InstallRequest) (*protocol.StagingJob, error) {
	if req.Keep == 0 {
		req.Keep = protocol.DefaultKeep
	}
	if req.Keep < 1 {
		return nil, fmt.Errorf("%w: keep %d: at least 1 (the installed release)", auth.ErrInvalid, req.Keep)
	}
	var out *protocol.StagingJob
	err := s.store.Update(func(tx *auth.Tx) error {
		jobs, err := allJobs(tx)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(jobs, func(j *protocol.StagingJob) bool { return j.Name == name })
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
			case p.State != protocol.StageStaged:
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
func retire(jobs []*protocol.StagingJob, installed *protocol.StagingJob, site string, keep int, now time.Time) {
	var older []*protocol.StagingJob
	for _, j := range jobs {
		if j != installed && j.AssignedTo(site) && j.Created.Before(installed.Created) {
			older = append(older, j)
		}
	}
	// Installed ones first, most recent first; then the never installed.
	slices.SortStableFunc(older, func(a, b *protocol.StagingJob) int {
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
func (s *Service) tasksFor(names ...string) []protocol.StageTask {
	var out []protocol.StageTask
	for _, j := range s.jobsFor(names...) {
		// Only the registry's own nodes pre-pull: a job staged here only
		// as the source of a descendant stays off this site's nodes.
		own := j.PrePull && j.AssignedTo(names[0])
		t := protocol.StageTask{Job: j.Name, Images: j.Images, RespectWindow: j.RespectWindow, PrePull: own}
		if own {
			t.NodeSelector = j.NodeSelector
		}
		out = append(out, t)
	}
	return out
}

// jobsFor returns the jobs that target any of names.
func (s *Service) jobsFor(names ...string) []*protocol.StagingJob {
	if len(names) == 0 {
		return nil
	}
	jobs, err := s.Jobs()
	if err != nil {
		return nil
	}
	var out []*protocol.StagingJob
	for _, j := range jobs {
		if slices.ContainsFunc(names, j.AssignedTo) {
			out = append(out, j)
		}
	}
	return out
}

// ReplicateStaging installs, at a gateway, the jobs its parent hands down
// for its descendants, keeping the progress its children reported to it
// and removing jobs its parent no longer lists.
func (s *Service) ReplicateStaging(jobs []*protocol.StagingJob) error {
	return s.store.Update(func(tx *auth.Tx) error {
		keep := map[string]bool{}
		for _, j := range jobs {
			keep[j.Name] = true
			var old protocol.StagingJob
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
func (s *Service) DescendantStaging() []protocol.SiteReport {
	jobs, err := s.Jobs()
	if err != nil {
		return nil
	}
	var out []protocol.SiteReport
	for _, j := range jobs {
		for site, p := range j.Sites {
			if p.Updated != nil {
				out = append(out, protocol.SiteReport{Site: site, StageReport: protocol.StageReport{Job: j.Name, SiteProgress: p}})
			}
		}
	}
	slices.SortFunc(out, func(a, b protocol.SiteReport) int { return strings.Compare(a.Job+"\x00"+a.Site, b.Job+"\x00"+b.Site) })
	return out
}

// noteFinished signals StagingFinished when a report ends a job.
func (s *Service) noteFinished(reports []protocol.StageReport) {
	for _, r := range reports {
		if r.State == protocol.StageStaged || r.State == protocol.StageFailed {
			select {
			case s.staged <- struct{}{}:
			default:
			}
			return
		}
	}
}

// recordStaging stores the progress reports of a site (inside tx).
func recordStaging(tx *auth.Tx, site string, reports []protocol.StageReport) error {
	for _, r := range reports {
		j := &protocol.StagingJob{}
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
		if r.State == protocol.StageStaged && r.StagedAt == nil {
			r.StagedAt = &now
		}
		j.Sites[site] = r.SiteProgress
		if err := tx.PutRecord(stagingBucket, j.Name, j); err != nil {
			return err
		}
	}
	return nil
}
