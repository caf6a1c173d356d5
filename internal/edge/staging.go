package edge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/outpost-registry/outpost/internal/protocol"
	"github.com/outpost-registry/outpost/internal/syncer"
)

// stageInterval is how often unfinished staging jobs are retried.
const stageInterval = 5 * time.Second

// stageLoop carries out the staging jobs of the configuration at once,
// with priority over scheduled sync, and keeps their progress for the
// heartbeats. A job whose images are all present ends Staged; an image the
// parent does not have ends it Failed; while the parent is unreachable it
// stays Staging and resumes by itself.
func (e *Edge) stageLoop(ctx context.Context) {
	t := time.NewTicker(stageInterval)
	defer t.Stop()
	for {
		e.stageOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-e.stageWake:
		case <-t.C:
		}
	}
}

func (e *Edge) stageOnce(ctx context.Context) {
	cfg := e.config()
	if cfg == nil {
		return
	}
	e.mu.Lock()
	online := e.online && !e.deactivated
	inWindow := time.Now().Before(e.windowEnd)
	// Forget jobs that were deleted.
	for job := range e.stages {
		found := false
		for _, task := range cfg.Staging {
			found = found || task.Job == job
		}
		if !found {
			delete(e.stages, job)
		}
	}
	e.mu.Unlock()
	e.nodes.forget(func(job string) bool {
		return slices.ContainsFunc(cfg.Staging, func(t protocol.StageTask) bool { return t.Job == job && t.PrePull })
	})
	for _, task := range cfg.Staging {
		if ctx.Err() != nil {
			return
		}
		e.mu.Lock()
		cur, ok := e.stages[task.Job]
		if !ok {
			cur = &protocol.StageReport{Job: task.Job, SiteProgress: protocol.SiteProgress{State: protocol.StagePending, ImagesTotal: len(task.Images)}}
			e.stages[task.Job] = cur
		}
		done := cur.State == protocol.StageStaged || cur.State == protocol.StageFailed
		e.mu.Unlock()
		if done || !online || (task.RespectWindow && cfg.SyncWindow != "" && !inWindow) {
			continue
		}
		e.runStage(ctx, task, cur)
	}
}

// runStage copies every image of a task and updates its report.
func (e *Edge) runStage(ctx context.Context, task protocol.StageTask, rep *protocol.StageReport) {
	e.setStage(rep, func(p *protocol.SiteProgress) { p.State, p.Reason = protocol.StageStaging, "" })
	var bytes int64
	done := 0
	var failed []string
	for _, im := range task.Images {
		if im.Digest == "" {
			failed = append(failed, fmt.Sprintf("image %s not found on the parent", im.Reference))
			continue
		}
		n, err := e.o.Engine.Stage(ctx, im.Repository, im.Digest, im.Tag)
		switch {
		case err == nil:
			done++
			bytes += n
		case errors.Is(err, syncer.ErrNotFound):
			failed = append(failed, fmt.Sprintf("image %s not found on the parent", im.Reference))
		default:
			// Transient (parent unreachable, disk full…): stay Staging,
			// retry on the next round, and say why.
			e.setStage(rep, func(p *protocol.SiteProgress) {
				p.ImagesDone, p.Bytes, p.Reason = done, bytes, fmt.Sprintf("%s: %v (retrying)", im.Reference, err)
			})
			return
		}
		e.setStage(rep, func(p *protocol.SiteProgress) { p.ImagesDone, p.Bytes = done, bytes })
	}
	e.setStage(rep, func(p *protocol.SiteProgress) {
		p.ImagesDone, p.Bytes = done, bytes
		if len(failed) > 0 {
			p.State, p.Reason = protocol.StageFailed, joinReasons(failed)
		} else {
			p.State, p.Reason = protocol.StageStaged, ""
		}
	})
	e.log.Info("staging job finished", "job", task.Job, "state", rep.State, "images", done, "bytes", bytes, "reason", rep.Reason)
	// Report it now: an operator watching `stage show` before a
	// maintenance window should not wait for the next heartbeat.
	select {
	case e.beat <- struct{}{}:
	default:
	}
}

func joinReasons(r []string) string {
	out := r[0]
	for _, s := range r[1:] {
		out += "; " + s
	}
	return out
}

func (e *Edge) setStage(rep *protocol.StageReport, f func(*protocol.SiteProgress)) {
	e.mu.Lock()
	f(&rep.SiteProgress)
	now := time.Now().UTC()
	rep.Updated = &now
	e.mu.Unlock()
}

// stageReports copies the staging reports for a heartbeat, with the node
// stage of pre-pull jobs.
func (e *Edge) stageReports() []protocol.StageReport {
	prePull := map[string]bool{}
	if cfg := e.config(); cfg != nil {
		for _, t := range cfg.Staging {
			prePull[t.Job] = t.PrePull
		}
	}
	e.mu.Lock()
	out := make([]protocol.StageReport, 0, len(e.stages))
	for _, r := range e.stages {
		out = append(out, *r)
	}
	e.mu.Unlock()
	for i := range out {
		if prePull[out[i].Job] {
			out[i].Nodes = e.nodes.rollup(out[i].Job)
		}
	}
	return out
}
