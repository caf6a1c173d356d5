package cli

import (
	"net/http"

	"github.com/spf13/cobra"
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
	}{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the sync status of a connected registry (this server, or --server)",
		Long: `Show whether a connected registry is online, its last sync run and the
progress of a running one (repositories, items and bytes done).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call[map[string]any](cmd, &o.clientOptions, &o.outputOptions, http.MethodGet, "/api/v1/status", nil, statusTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	return cmd
}
