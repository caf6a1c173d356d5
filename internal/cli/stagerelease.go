package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-registry/outpost/internal/client"
	"github.com/outpost-registry/outpost/internal/protocol"
)

type stageWaitOptions struct {
	clientOptions
	name     string
	targets  []string
	timeout  time.Duration
	interval time.Duration
	nodes    bool
	minNodes int
}

func newStageWait() *cobra.Command {
	o := &stageWaitOptions{}
	cmd := &cobra.Command{
		Use:   "wait --name NAME [--connected-registry C...] [--timeout 2h] [--nodes [--min-nodes N]]",
		Short: "Block until a release is Staged at its sites; fail naming the sites that failed",
		Long: `Wait until the release is Staged (or Installed) at every named site (default:
every site of the job), printing each site's progress as it changes. Exits
0 when they are; non-zero at once when a site has Failed, naming it and its
reason (such as an image its parent no longer has), or when --timeout
passes, naming the sites still staging. A deployment pipeline runs
stage create, stage wait, its own helm upgrade, then stage mark-installed.

With --nodes (a --pre-pull job) a site counts only once every node that
reports the job there (at least --min-nodes of them) has pulled it; nodes
that fail are retried by their agents, so they are printed, not fatal,
and named when --timeout passes.`,
		Example: `  outpost stage wait --name release-42 --timeout 2h && helm upgrade … && outpost stage mark-installed --name release-42`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			return waitStaged(ctx, c, o, cmd.OutOrStdout())
		},
	}
	o.clientOptions.bind(cmd.Flags())
	cmd.Flags().StringVarP(&o.name, "name", "n", "", "release (staging job) name")
	listFlag(cmd.Flags(), &o.targets, listNames, "connected-registry", "sites to wait for (default: every site of the job)")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 2*time.Hour, "give up after this long")
	cmd.Flags().DurationVar(&o.interval, "interval", 2*time.Second, "how often to poll the root")
	cmd.Flags().BoolVar(&o.nodes, "nodes", false, "also wait until the nodes at each site have pulled the release (--pre-pull)")
	cmd.Flags().IntVar(&o.minNodes, "min-nodes", 1, "with --nodes, how many nodes must report at each site")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

// nodesLine describes a site's node stage for stage wait, and reports
// whether it is complete: at least min nodes report, all Pulled.
func nodesLine(n *protocol.NodeRollup, min int) (string, bool) {
	line := fmt.Sprintf(", nodes %d/%d pulled", n.Done, n.Total)
	var failing []string
	for _, nd := range n.Nodes {
		if nd.State == protocol.NodeFailed {
			failing = append(failing, nd.Node+": "+nd.Reason)
		}
	}
	if len(failing) > 0 {
		line += fmt.Sprintf(", %d failing (%s)", n.Failed, strings.Join(failing, "; "))
	}
	return line, n.Total >= min && n.Done == n.Total
}

// waitStaged polls the job until the sites are done, printing a line per
// site whenever its progress changes.
func waitStaged(ctx context.Context, c *client.Client, o *stageWaitOptions, w io.Writer) error {
	last := map[string]string{}
	var lastWaiting []string
	for {
		var job protocol.StagingJob
		err := c.Do(ctx, http.MethodGet, "/api/v1/staging/"+url.PathEscape(o.name), nil, &job)
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return timedOut(o, lastWaiting)
		}
		if err != nil {
			return err
		}
		sites := o.targets
		if len(sites) == 0 {
			sites = slices.Sorted(maps.Keys(job.Sites))
		}
		var failed, waiting []string
		for _, s := range sites {
			p, ok := job.Sites[s]
			if !ok {
				return fmt.Errorf("release %s does not target %s", o.name, s)
			}
			line := fmt.Sprintf("%s %s %d/%d images %d bytes", p.State, progressBar(p.ImagesDone, p.ImagesTotal), p.ImagesDone, p.ImagesTotal, p.Bytes)
			if p.Reason != "" {
				line += ": " + p.Reason
			}
			nodesDone := true
			if o.nodes {
				if p.Nodes == nil {
					return fmt.Errorf("release %s is not a --pre-pull job: it has no node stage at %s", o.name, s)
				}
				var more string
				more, nodesDone = nodesLine(p.Nodes, o.minNodes)
				line += more
			}
			if last[s] != line {
				fmt.Fprintf(w, "%s %s %s\n", time.Now().UTC().Format(time.TimeOnly), s, line)
				last[s] = line
			}
			switch {
			case p.State == protocol.StageFailed:
				failed = append(failed, s+": "+p.Reason)
			case p.State != protocol.StageStaged || !nodesDone:
				waiting = append(waiting, s+" ("+line+")")
			}
		}
		if len(failed) > 0 {
			return fmt.Errorf("release %s failed at %d site(s): %s", o.name, len(failed), strings.Join(failed, "; "))
		}
		if len(waiting) == 0 {
			what := "Staged"
			if o.nodes {
				what = "Staged and pulled by the nodes"
			}
			fmt.Fprintf(w, "release %s is %s at %s\n", o.name, what, strings.Join(sites, ", "))
			return nil
		}
		select {
		case <-ctx.Done():
			return timedOut(o, waiting)
		case <-time.After(o.interval):
		}
		lastWaiting = waiting
	}
}

func timedOut(o *stageWaitOptions, waiting []string) error {
	return fmt.Errorf("release %s: timed out after %s; still waiting for %s", o.name, o.timeout, strings.Join(waiting, ", "))
}

type stageInstallOptions struct {
	clientOptions
	outputOptions
	name    string
	targets []string
	keep    int
}

func newStageMarkInstalled() *cobra.Command {
	o := &stageInstallOptions{}
	cmd := &cobra.Command{
		Use:   "mark-installed --name NAME [--connected-registry C...] [--keep N]",
		Short: "Record that a release is installed at sites; stop protecting the releases before the kept ones",
		Long: `Mark a Staged release installed at the named sites (default: every site of the
job). At each site, the root then keeps assigning only the last --keep
releases (this one included; default 2, this one and the one installed
before it, for rollback) among those created up to this one: older ones
are retired there, so the site's garbage collection may reclaim their
images. Releases created after this one are not affected.`,
		Example: `  outpost stage mark-installed --name release-42
  outpost stage mark-installed --name release-42 --connected-registry factory1 --keep 1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := protocol.InstallRequest{Targets: o.targets, Keep: o.keep}
			return call[protocol.StagingJob](cmd, &o.clientOptions, &o.outputOptions, http.MethodPost,
				"/api/v1/staging/"+url.PathEscape(o.name)+"/installed", req, stageSitesTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	cmd.Flags().StringVarP(&o.name, "name", "n", "", "release (staging job) name")
	listFlag(cmd.Flags(), &o.targets, listNames, "connected-registry", "sites the release is installed at (default: every site of the job)")
	cmd.Flags().IntVar(&o.keep, "keep", protocol.DefaultKeep, "releases to keep assigned per site, this one included")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}
