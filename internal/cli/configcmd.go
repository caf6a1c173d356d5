package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-registry/outpost/internal/server"
)

func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check and show the server configuration",
	}
	o := &serveOptions{}
	var offline bool
	validate := &cobra.Command{
		Use:   "validate",
		Short: "Validate a config file and flags, printing the effective configuration",
		Long: `Validate a config file and flags exactly as serve does before it starts
(the connection string, a generic parent's URL, mode, sync schedule, sync
window and password file included) and print the effective configuration,
with secrets such as the sync token password shown as <redacted>. When
the config selects remote storage (storage.blobs type s3, storage.metadata
type postgres) it also connects to the bucket and the database, with the
configured credentials, and fails if either does not answer; --offline
skips that. On any problem it prints every problem found and exits
non-zero.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.load(cmd.Flags())
			if err != nil {
				return err
			}
			for _, w := range o.warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
			}
			if !offline {
				ctx, cancel := context.WithTimeout(cmd.Context(), 15*time.Second)
				defer cancel()
				if err := server.CheckStorage(ctx, cfg); err != nil {
					return fmt.Errorf("storage unreachable:\n%w", err)
				}
			}
			out, err := cfg.Marshal()
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), string(out))
			return err
		},
	}
	o.bind(validate.Flags())
	validate.Flags().BoolVar(&offline, "offline", false, "do not connect to remote storage (S3, PostgreSQL)")
	cmd.AddCommand(validate)
	return cmd
}
