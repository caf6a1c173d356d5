// Package cli builds the command tree of the outpost binary: the server,
// and (as they land) the client and node-agent commands. Commands are
// thin; the logic lives in the domain packages.
package cli

import (
	"context"
	"io"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Set at build time with -ldflags "-X …/internal/cli.version=… -X …/internal/cli.commit=…".
var (
	version = "dev"
	commit  = ""
)

// Version returns the version and commit of this build.
func Version() (string, string) {
	c := commit
	if c == "" {
		if info, ok := debug.ReadBuildInfo(); ok {
			for _, s := range info.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	return version, c
}

// NewRoot returns the outpost command tree.
func NewRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "outpost",
		Short: "Outpost: a connected OCI registry for sites at the edge of the network",
		Long: `Outpost is an OCI Distribution v1.1 registry that keeps a local, complete and
verified copy of the images a site needs, and keeps serving them when the
parent registry is unreachable.

Start a registry with the embedded defaults (local disk):
  outpost serve`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return validateOutputFlags(cmd)
		},
	}
	root.AddCommand(newServeCommand(), newVersionCommand(), newConfigCommand(),
		newLoginCommand(), newScopeMapCommand(), newTokenCommand(), newRetentionCommand(), newConnectedRegistryCommand(),
		newStatusCommand(), newPKICommand(), newStageCommand(), newStorageCommand(), newGCCommand(), newRepositoryCommand(), newImportCommand(), newBundleCommand())
	root.AddCommand(newTrustCommand(), newHelmValuesCommand())
	return root
}

// Run executes the command tree with args and returns the error to report.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := NewRoot()
	root.SetArgs(expandListArgs(root, args))
	root.SetOut(stdout)
	root.SetErr(stderr)
	return root.ExecuteContext(ctx)
}

var stderrWriter io.Writer = os.Stderr
