package cli

import (
	"fmt"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/outpost-registry/outpost/internal/server"
)

var statusTable = table{
	headers: []string{"ROLE", "NAME", "MODE", "CONNECTION STATE", "PARENT", "LAST SYNC(UTC)", "RESULT", "REPOSITORIES DONE", "ITEMS", "BYTES"},
	rows: listRows("role", "name", "mode", "connectionState", "parent", "lastSyncTime", "lastSyncResult.state",
		"progress.repositoriesDone", "progress.items", "progress.bytes"),
}

func newStatusCommand() *cobra.Command {
	o := &struct {
		clientOptions
		outputOptions
		reclaimable bool
	}{}
	cmd := &cobra.Command{
		Use:   "status [--reclaimable]",
		Short: "Show the sync status and storage of a registry (this server, or --server)",
		Long: `Show whether a connected registry is online, its last sync run and the
progress of a running one (repositories, items and bytes done), then its
storage: bytes per repository, the total with shared blobs counted once, the
data volume's used, total and free bytes, and with --reclaimable what a
garbage collection would reclaim now (it runs a dry collection). With -o
json the status carries the storage usage under "storage".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkQuery[map[string]any](&o.outputOptions); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			var st map[string]any
			if err := c.Do(cmd.Context(), http.MethodGet, "/api/v1/status", nil, &st); err != nil {
				return err
			}
			path := "/api/v1/storage"
			if o.reclaimable {
				path += "?reclaimable=true"
			}
			var u server.StorageUsage
			if err := c.Do(cmd.Context(), http.MethodGet, path, nil, &u); err != nil {
				return err
			}
			if o.format != "table" && o.format != "tsv" || o.query != "" {
				st["storage"] = u
				return o.render(cmd.OutOrStdout(), st, statusTable)
			}
			if err := o.render(cmd.OutOrStdout(), st, statusTable); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return o.render(cmd.OutOrStdout(), u, usageTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	cmd.Flags().BoolVar(&o.reclaimable, "reclaimable", false, "also report the bytes a garbage collection would reclaim now (runs a dry collection)")
	return cmd
}
