package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-registry/outpost/internal/client"
	"github.com/outpost-registry/outpost/internal/server"
	"github.com/outpost-registry/outpost/internal/storage/gc"
)

var gcReportTable = table{
	headers: []string{"STARTED(UTC)", "DRY RUN", "MANIFESTS", "LINKS", "BLOBS", "BYTES", "QUARANTINED", "LIVE BLOBS", "LIVE BYTES", "ERROR"},
	rows:    listRows("started", "dryRun", "manifests", "links", "blobs", "blobBytes", "quarantined", "liveBlobs", "liveBytes", "error"),
}

var gcStatusTable = table{
	headers: []string{"RUNNING", "PHASE", "SCHEDULE", "GRACE", "NEXT(UTC)", "LAST STARTED(UTC)", "LAST MANIFESTS", "LAST BLOBS", "LAST BYTES", "LAST ERROR"},
	rows: listRows("running", "progress.phase", "schedule", "gracePeriod", "next", "last.started", "last.manifests", "last.blobs",
		"last.blobBytes", "last.error"),
}

func newGCCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Run or inspect the registry's garbage collection",
		Long: `Garbage collection removes, while the registry serves, manifests that no tag
(or tagged index, or referrer subject) keeps, blob links no kept manifest
names, blob files no repository links, and quarantined corrupt blobs. Content
younger than gc.gracePeriod (default 1h) is always kept. It runs on
gc.schedule (default daily 03:30 UTC) and on demand with 'outpost gc run'.`,
	}
	cmd.AddCommand(newGCRun(), newGCStatus())
	return cmd
}

func newGCRun() *cobra.Command {
	o := &struct {
		clientOptions
		outputOptions
		dry bool
	}{}
	cmd := &cobra.Command{
		Use:   "run [--dry-run]",
		Short: "Collect garbage now and print what was removed (manifests, links, blobs, bytes)",
		Long: `Run a garbage collection on the server now and print its report once it is
done. With --dry-run nothing is removed and the report lists what would be.
On a terminal, the progress of the run is shown on standard error. A run
already in progress answers 409 InUse.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkQuery[gc.Report](&o.outputOptions); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			stop := showGCProgress(cmd.Context(), c, cmd.ErrOrStderr())
			var rep gc.Report
			err = c.Do(cmd.Context(), http.MethodPost, "/api/v1/gc/runs", server.GCRunRequest{DryRun: o.dry}, &rep)
			stop()
			if err != nil {
				return err
			}
			return o.render(cmd.OutOrStdout(), rep, gcReportTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	cmd.Flags().BoolVar(&o.dry, "dry-run", false, "report what would be removed, remove nothing")
	return cmd
}

// showGCProgress polls the server's GC status and rewrites one line of w
// with the running phase, when w is a terminal. stop ends it.
func showGCProgress(ctx context.Context, c *client.Client, w io.Writer) (stop func()) {
	f, ok := w.(*os.File)
	if !ok {
		return func() {}
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
			}
			var st server.GCStatus
			if err := c.Do(ctx, http.MethodGet, "/api/v1/gc", nil, &st); err != nil || st.Progress == nil {
				continue
			}
			fmt.Fprintf(w, "\r\033[Kgc: %s %d/%d", st.Progress.Phase, st.Progress.Done, st.Progress.Total)
		}
	}()
	return func() { cancel(); <-done }
}

func newGCStatus() *cobra.Command {
	o := &struct {
		clientOptions
		outputOptions
	}{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the schedule, a running collection's progress and the last run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call[server.GCStatus](cmd, &o.clientOptions, &o.outputOptions, http.MethodGet, "/api/v1/gc", nil, gcStatusTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	return cmd
}

var usageTable = table{
	headers: []string{"REPOSITORY", "TAGS", "MANIFESTS", "BLOBS", "BYTES"},
	rows: func(v any) [][]string {
		// v is the generic JSON of the answer: decode it again.
		var u server.StorageUsage
		if b, err := json.Marshal(v); err != nil || json.Unmarshal(b, &u) != nil {
			return nil
		}
		var rows [][]string
		for _, r := range u.Repositories {
			rows = append(rows, []string{r.Repository, fmt.Sprint(r.Tags), fmt.Sprint(r.Manifests), fmt.Sprint(r.Blobs), fmt.Sprint(r.BlobBytes + r.ManifestBytes)})
		}
		total := []string{"TOTAL (shared blobs once)", "", "", fmt.Sprint(u.Blobs), fmt.Sprint(u.BlobBytes + u.ManifestBytes)}
		rows = append(rows, total, []string{"VOLUME used/total", "", "", "", fmt.Sprintf("%d/%d", u.Volume.Used, u.Volume.Total)},
			[]string{"VOLUME free", "", "", "", fmt.Sprint(u.Volume.Free)})
		if u.ReclaimableBytes != nil {
			rows = append(rows, []string{"RECLAIMABLE", "", "", "", fmt.Sprint(*u.ReclaimableBytes)})
		}
		return rows
	},
}

func newStorageUsage() *cobra.Command {
	o := &struct {
		clientOptions
		outputOptions
		reclaimable bool
	}{}
	cmd := &cobra.Command{
		Use:   "usage [--reclaimable]",
		Short: "Show bytes per repository, the total (shared blobs counted once) and the data volume's use",
		Long: `Show what each repository of the server holds (tags, manifests, blobs and
bytes; a blob shared by several repositories counts in each), the total with
each blob counted once, and the data volume's used and total bytes. With
--reclaimable the server also runs a dry garbage collection and reports the
bytes a collection now would free.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/api/v1/storage"
			if o.reclaimable {
				path += "?reclaimable=true"
			}
			return call[server.StorageUsage](cmd, &o.clientOptions, &o.outputOptions, http.MethodGet, path, nil, usageTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	cmd.Flags().BoolVar(&o.reclaimable, "reclaimable", false, "also report the bytes a garbage collection would reclaim now (runs a dry collection)")
	return cmd
}
