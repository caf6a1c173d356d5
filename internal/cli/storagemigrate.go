package cli

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/server"
	"github.com/outpost-registry/outpost/internal/storage/migrate"
)

// storageMigrateOptions are the flags of `outpost storage migrate`.
type storageMigrateOptions struct {
	outputOptions
	from, to string
}

func newStorageMigrate() *cobra.Command {
	o := &storageMigrateOptions{}
	cmd := &cobra.Command{
		Use:   "migrate --from FILE --to FILE",
		Short: "Copy a registry's content from its embedded stores into S3 and PostgreSQL",
		Long: `Copy every repository of the stores the --from config selects (the data
directory: storage.blobs fs and storage.metadata bolt) into those the --to
config selects (storage.metadata postgres; blobs on s3, or fs in another
data directory): blobs go through the destination's upload sessions, which
verify each digest; then each repository's blob links, manifests, tags and
change feed are written in one transaction, keeping the feed's sequence
numbers, so connected registries following it keep their place.

Stop serve on the source first (it holds the metadata database's lock).
Run it again after an interruption: blobs already in the destination are not
copied again, and repositories are rewritten idempotently. Prints one line
per repository and a summary.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.from == "" || o.to == "" {
				return fmt.Errorf("--from and --to are both required")
			}
			var cfgs [2]config.Config
			for i, f := range []string{o.from, o.to} {
				c, err := config.LoadFile(f)
				if err == nil {
					c.ApplyDefaults()
					err = c.Validate()
				}
				if err != nil {
					return fmt.Errorf("%s: %w", f, err)
				}
				cfgs[i] = c
			}
			text := o.format == "text" || o.format == ""
			rep, err := server.MigrateStorage(cmd.Context(), cfgs[0], cfgs[1], slog.New(slog.DiscardHandler), func(repo string, r migrate.Report) {
				if text {
					fmt.Fprintf(cmd.OutOrStdout(), "migrated %s\n", repo)
				}
			})
			if text {
				fmt.Fprintf(cmd.OutOrStdout(), "%d repositories, %d blob links: %d blobs (%d bytes) copied\n", rep.Repositories, rep.Blobs, rep.BlobsCopied, rep.BytesCopied)
				fmt.Fprintf(cmd.OutOrStdout(), "%d identity and fleet records copied, %d already at the destination kept\n", rep.Records, rep.RecordsKept)
			} else if rerr := o.render(cmd.OutOrStdout(), rep, table{}); rerr != nil {
				return rerr
			}
			return err
		},
	}
	cmd.Flags().StringVar(&o.from, "from", "", "config file of the source (its data directory)")
	cmd.Flags().StringVar(&o.to, "to", "", "config file of the destination (S3 and PostgreSQL)")
	o.outputOptions.bind(cmd.Flags())
	_ = cmd.Flags().Set("output", "text")
	cmd.Flags().Lookup("output").DefValue = "text"
	cmd.Flags().Lookup("output").Usage = "output format: text, json or yaml"
	return cmd
}
