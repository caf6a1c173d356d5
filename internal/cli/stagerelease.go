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
}

func newStageWait() *cobra.Command {
	o := &stageWaitOptions{}
	cmd := &cobra.Command{
		Use:   "wait --name NAME [--connected-registry C...] [--timeout 2h]",
		Short: "Block until a release is Staged at its sites; fail naming the sites that failed",
		Long: `Wait until the release is Staged (or Installed) at every named site (default:
every site of the job), printing each site's progress as it changes. Exits
0 when they are; non-zero at once when a site has Failed, naming it and its
reason (such as an image its parent no longer has), or when --timeout
passes, naming the sites still staging. A deployment pipeline runs
stage create, stage wait, its own helm upgrade, then stage mark-installed.`,
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
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

// waitStaged polls the job until the sites are done, printing a line per
// site whenever its progress changes.
func waitStaged(ctx context.Context, c *client.Client, o *stageWaitOptions, w io.Writer) error {
	last := map[string]string{}
	for {
		var job protocol.StagingJob
		err := c.Do(ctx, http.MethodGet, "/api/v1/staging/"+url.PathEscape(o.name), nil, &job)
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return timedOut(o, last)
		}
		if err != nil {
			return err
		}
		sites := o.targets
		if len(sites) == 0 {
			sites = slices.Sorted(maps.Keys(job.Sites))
		}
		var failed []string
		pending := 0
		for _, s := range sites {
			p, ok := job.Sites[s]
			if !ok {
				return fmt.Errorf("release %s does not target %s", o.name, s)
			}
			line := fmt.Sprintf("%s %s %d/%d images %d bytes", p.State, progressBar(p.ImagesDone, p.ImagesTotal), p.ImagesDone, p.ImagesTotal, p.Bytes)
			if p.Reason != "" {
				line += ": " + p.Reason
			}
			if last[s] != line {
				fmt.Fprintf(w, "%s %s %s\n", time.Now().UTC().Format(time.TimeOnly), s, line)
				last[s] = line
			}
			switch p.State {
			case protocol.StageFailed:
				failed = append(failed, s+": "+p.Reason)
			case protocol.StageStaged:
			default:
				pending++
			}
		}
		if len(failed) > 0 {
			return fmt.Errorf("release %s failed at %d site(s): %s", o.name, len(failed), strings.Join(failed, "; "))
		}
		if pending == 0 {
			fmt.Fprintf(w, "release %s is Staged at %s\n", o.name, strings.Join(sites, ", "))
			return nil
		}
		select {
		case <-ctx.Done():
			return timedOut(o, last)
		case <-time.After(o.interval):
		}
	}
}

func timedOut(o *stageWaitOptions, last map[string]string) error {
	var waiting []string
	for _, s := range slices.Sorted(maps.Keys(last)) {
		if !strings.HasPrefix(last[s], string(protocol.StageStaged)+" ") {
			waiting = append(waiting, s+" ("+last[s]+")")
		}
	}
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
