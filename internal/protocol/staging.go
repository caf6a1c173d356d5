package protocol

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/identity"
	"github.com/outpost-registry/outpost/internal/oci"
)

// StageState is a site's state for a staging job, and (derived from its
// sites) the lifecycle state of the job, a release.
type StageState string

// Stage states.
const (
	StagePending StageState = "Pending"
	StageStaging StageState = "Staging"
	StageStaged  StageState = "Staged"
	StageFailed  StageState = "Failed"
	// StageInstalled is a release the operator marked installed at every
	// target (`stage mark-installed`).
	StageInstalled StageState = "Installed"
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
	State       StageState `json:"state"`
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
	// agents reported it (nil for a job without prePull).
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
	State StageState `json:"state"`
}

// ReleaseState derives a job's lifecycle state from its sites.
func (j *StagingJob) ReleaseState() StageState {
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

// AssignedTo reports whether the parent assigns the job to site: it
// targets the site and no later installed release retired it there.
func (j *StagingJob) AssignedTo(site string) bool {
	p, ok := j.Sites[site]
	return ok && p.RetiredAt == nil && slices.Contains(j.Targets, site)
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
			return "", "", fmt.Errorf("%w: image %q: %w", identity.ErrInvalid, ref, err)
		}
	} else {
		i := strings.LastIndexByte(ref, ':')
		if i <= 0 || strings.Contains(ref[i:], "/") {
			return "", "", fmt.Errorf("%w: image %q: want repository:tag or repository@digest", identity.ErrInvalid, ref)
		}
		repo, tagOrDigest = ref[:i], ref[i+1:]
		if err := oci.ValidateTag(tagOrDigest); err != nil {
			return "", "", fmt.Errorf("%w: image %q: %w", identity.ErrInvalid, ref, err)
		}
	}
	if err := oci.ValidateName(repo); err != nil {
		return "", "", fmt.Errorf("%w: image %q: %w", identity.ErrInvalid, ref, err)
	}
	return repo, tagOrDigest, nil
}

// SiteReport is a descendant's progress on a job, relayed by its gateway.
type SiteReport struct {
	Site string `json:"site"`
	StageReport
}
