package cli

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/logging"
	"github.com/outpost-registry/outpost/internal/server"
	"github.com/outpost-registry/outpost/internal/storage/fs"
)

func newStorageCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "storage",
		Short: "Check the data directory of a registry, show its usage, or migrate it to S3 and PostgreSQL",
	}
	cmd.AddCommand(newStorageVerify(), newStorageUsage(), newStorageMigrate())
	return cmd
}

// storageVerifyOptions are the flags of `outpost storage verify`: serve's
// flags (to read the same configuration), the repair switch and -o.
type storageVerifyOptions struct {
	serveOptions
	outputOptions
	repair bool
}

// verifyResult is the JSON output of `outpost storage verify`.
type verifyResult struct {
	Report   fs.ScrubReport `json:"report"`
	Outcomes []verifyBlob   `json:"corrupt"`
}

type verifyBlob struct {
	fs.Corruption
	Repaired bool   `json:"repaired"`
	Error    string `json:"repairError,omitempty"`
}

func newStorageVerify() *cobra.Command {
	o := &storageVerifyOptions{}
	cmd := &cobra.Command{
		Use:   "verify [--config FILE | --data DIR] [--repair-from-parent]",
		Short: "Hash every blob of the data directory and quarantine those whose content does not match its digest",
		Long: `Read every blob in the data directory and compare its content with its
digest. A blob that fails (truncated, overwritten, rotted) is moved to
<data>/quarantine/ and is unknown to the registry from then on: pulls answer
404 BLOB_UNKNOWN, and a connected registry fetches it again from its parent
on the next pull or sync. Prints one line per corrupt blob and a summary, and
exits non-zero when a corrupt blob is left without a good copy.

It takes serve's flags and --config, so that it reads the data directory and
parent that serve uses. Without --repair-from-parent it only reads blobs and
may run while serve runs. With --repair-from-parent it also downloads each
corrupt blob again from the parent (connection string or generic parent),
verifying it as sync does; that needs the metadata store, so stop serve
first (a running serve repairs by itself on its scheduled scrub,
storage.scrubInterval).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.load(cmd.Flags())
			if err != nil {
				return err
			}
			log := slog.New(slog.DiscardHandler) // the report is the output
			if cmd.Flags().Changed("log-level") {
				log, _ = logging.New(cmd.ErrOrStderr(), cfg.Log.Level, config.FormatText)
			}
			var res verifyResult
			text := o.format == "text" || o.format == ""
			rep, err := server.VerifyStorage(cmd.Context(), cfg, log, server.VerifyOptions{
				RepairFromParent: o.repair,
				Report: func(out server.RepairOutcome) {
					vb := verifyBlob{Corruption: out.Corruption, Repaired: out.Repaired}
					if out.Err != nil {
						vb.Error = out.Err.Error()
					}
					res.Outcomes = append(res.Outcomes, vb)
					if text {
						printCorrupt(cmd, vb, o.repair)
					}
				},
			})
			res.Report = rep
			unrepaired := 0
			for _, b := range res.Outcomes {
				if !b.Repaired {
					unrepaired++
				}
			}
			if text {
				fmt.Fprintf(cmd.OutOrStdout(), "verified %d blobs (%d bytes): %d corrupt, %d repaired from the parent\n",
					rep.Blobs, rep.Bytes, len(res.Outcomes), len(res.Outcomes)-unrepaired)
			} else if rerr := o.render(cmd.OutOrStdout(), res, table{}); rerr != nil {
				return rerr
			}
			if err != nil {
				return err
			}
			if unrepaired > 0 {
				return fmt.Errorf("%d corrupt blobs were quarantined and have no good copy here; push or sync them again", unrepaired)
			}
			return nil
		},
	}
	o.serveOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	_ = cmd.Flags().Set("output", "text")
	cmd.Flags().Lookup("output").DefValue = "text"
	cmd.Flags().Lookup("output").Usage = "output format: text, json or yaml"
	cmd.Flags().BoolVar(&o.repair, "repair-from-parent", false, "download each corrupt blob again from the configured parent (serve must be stopped)")
	return cmd
}

func printCorrupt(cmd *cobra.Command, b verifyBlob, repair bool) {
	where := "could not be moved aside"
	if b.Quarantine != "" {
		where = "moved to " + b.Quarantine
	}
	fate := ""
	switch {
	case b.Repaired:
		fate = "; fetched again from the parent"
	case repair && b.Error != "":
		fate = "; fetching it again failed: " + b.Error
	}
	fmt.Fprintf(cmd.OutOrStdout(), "CORRUPT  %s: %s; %s%s\n", b.Digest, b.Reason, where, fate)
}
