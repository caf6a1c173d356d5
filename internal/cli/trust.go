package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/outpost-registry/outpost/internal/agent"
)

// trustOptions are the flags shared by install and uninstall.
type trustOptions struct {
	agent.Options
	watch           bool
	interval        time.Duration
	uninstallOnExit bool
}

func (o *trustOptions) bindNode(fs *pflag.FlagSet) {
	fs.StringVar(&o.Host, "host", "", "the Outpost registry as images name it: <ip-or-name>:<port> (required)")
	fs.StringVar(&o.Root, "root", "", "prefix of every node path, e.g. /host when the node's filesystem is mounted there")
	fs.StringVar(&o.ContainerdCertsDir, "containerd-certs-dir", agent.DefaultContainerdCertsDir,
		`containerd's certs directory (its config_path); "" skips containerd`)
	fs.StringVar(&o.DockerCertsDir, "docker-certs-dir", agent.DefaultDockerCertsDir, `docker's certs directory; "" skips docker`)
	fs.StringSliceVar(&o.MirrorOf, "mirror-of", nil, "upstream registry host that containerd pulls from Outpost first (repeatable)")
}

func newTrustCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trust",
		Short: "Make a node's container runtimes trust an Outpost registry (node agent)",
		Long: `Write, remove and check the files that make containerd and docker on a node
trust an Outpost registry's CA: certs.d/<host:port>/hosts.toml and ca.crt for
containerd, certs.d/<host:port>/ca.crt for docker. Optionally make Outpost a
transparent mirror of upstream registries, so images keep their names.`,
	}
	cmd.AddCommand(newTrustInstall(), newTrustUninstall(), newTrustDoctor(), newTrustPrePull())
	return cmd
}

func newTrustInstall() *cobra.Command {
	var o trustOptions
	cmd := &cobra.Command{
		Use:   "install --host HOST:PORT --ca-file FILE",
		Short: "Write hosts.toml and ca.crt so that containerd and docker trust Outpost",
		Long: `Write, atomically and idempotently (a file already right is not touched):
  <containerd-certs-dir>/<host>/hosts.toml   server and [host."https://<host>"] with ca
  <containerd-certs-dir>/<host>/ca.crt       the CA of --ca-file
  <docker-certs-dir>/<host>/ca.crt           the same CA, for docker
  <both certs dirs>/<alias>/...              the same three files for the host's other
                                             spelling when the port is 443: <ip> for <ip>:443
                                             and <ip>:443 for <ip>
  <containerd-certs-dir>/<upstream>/hosts.toml   for each --mirror-of: pull from Outpost first,
                                                 then from the upstream
and a .outpost-trust marker in each directory listing what outpost wrote, so
that uninstall removes exactly that. A runtime whose configuration directory
(the parent of its certs directory) does not exist is skipped. A hosts.toml
or ca.crt that outpost did not write is never replaced without --force
(which keeps the original as <name>.outpost-orig; uninstall restores it);
an alias directory holding such files, or written by outpost for another
--host, is skipped and reported, and the rest is installed.

containerd rereads certs.d on every pull: no restart is needed, but its
config_path must name the certs directory (check with "outpost trust doctor").

--ca-file is read in this process's filesystem, not under --root.
With --watch the files are re-applied every --interval (a rotated CA is picked
up, a deleted file is put back) until SIGTERM; they stay unless
--uninstall-on-exit.`,
		Example: `  # On a node, with the CA of the Outpost (outpost pki ca > ca.crt):
  outpost trust install --host 10.0.0.5:5000 --ca-file ca.crt

  # Also serve docker.io and registry.example.com images from Outpost first:
  outpost trust install --host 10.0.0.5:5000 --ca-file ca.crt --mirror-of docker.io --mirror-of registry.example.com

  # In a DaemonSet, with the host's filesystem at /host and the CA Secret at /ca:
  outpost trust install --root /host --host 10.96.0.50:443 --ca-file /ca/ca.crt \
    --containerd-certs-dir /etc/containerd/certs.d --watch --uninstall-on-exit`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.uninstallOnExit && !o.watch {
				return errors.New("--uninstall-on-exit needs --watch")
			}
			out := cmd.OutOrStdout()
			if !o.watch {
				res, err := agent.Install(o.Options)
				printResult(out, res)
				if err != nil {
					return fmt.Errorf("trust install: %w", err)
				}
				return nil
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			err := agent.Watch(ctx, o.Options, agent.WatchOptions{
				Interval:        o.interval,
				UninstallOnExit: o.uninstallOnExit,
				Report:          func(r agent.Result) { printResult(out, r) },
			}, log)
			if err != nil {
				return fmt.Errorf("trust install: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	o.bindNode(f)
	f.StringVar(&o.CAFile, "ca-file", "", "CA certificate (PEM) of the Outpost registry (required)")
	f.BoolVar(&o.Force, "force", false, "replace a hosts.toml or ca.crt not written by outpost (the original is kept and restored by uninstall)")
	f.BoolVar(&o.watch, "watch", false, "keep running and re-apply every --interval until SIGTERM")
	f.DurationVar(&o.interval, "interval", 10*time.Second, "with --watch, how often to re-apply")
	f.BoolVar(&o.uninstallOnExit, "uninstall-on-exit", false, "with --watch, remove the files on SIGTERM/SIGINT")
	_ = cmd.MarkFlagRequired("host")
	_ = cmd.MarkFlagRequired("ca-file")
	return cmd
}

func newTrustUninstall() *cobra.Command {
	var o trustOptions
	cmd := &cobra.Command{
		Use:   "uninstall --host HOST:PORT",
		Short: "Remove exactly the files that trust install wrote",
		Long: `Remove the files listed in the .outpost-trust markers of the host's directories
(and of the mirrors given with --mirror-of or recorded by the last install),
put back originals replaced with --force, and remove the directories install
created once empty. Files that outpost did not write, or that changed since,
stay. Use the same --host, --root and directory flags as install.`,
		Example: `  outpost trust uninstall --host 10.0.0.5:5000
  outpost trust uninstall --root /host --host 10.96.0.50:443`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := agent.Uninstall(o.Options)
			printResult(cmd.OutOrStdout(), res)
			if err != nil {
				return fmt.Errorf("trust uninstall: %w", err)
			}
			return nil
		},
	}
	o.bindNode(cmd.Flags())
	_ = cmd.MarkFlagRequired("host")
	return cmd
}

func newTrustDoctor() *cobra.Command {
	var o agent.DoctorOptions
	cmd := &cobra.Command{
		Use:   "doctor --host HOST:PORT",
		Short: "Check that containerd on this node trusts Outpost",
		Long: `Check, one line each (ok, FAIL with a fix, or skip when an earlier check failed):
  containerd config_path   config.toml (version 2 or 3) names the certs directory
  hosts.toml               present, valid TOML, with [host."https://<host>"], pull and resolve, and ca
  ca.crt                   the CA that hosts.toml names is a PEM CA certificate
  mirror <upstream>        for each --mirror-of: its hosts.toml sends pulls to Outpost
  served certificate       a TLS connection to the host (5 s timeout) verifies against that CA
  CRI socket               with --cri-socket: the runtime answers a CRI Version call (pre-pull)
Exits non-zero when a check does not pass. Nothing is changed.`,
		Example: `  outpost trust doctor --host 10.0.0.5:5000
  outpost trust doctor --root /host --host 10.96.0.50:443 --mirror-of docker.io`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep := agent.Doctor(cmd.Context(), o)
			if err := rep.WriteText(cmd.OutOrStdout()); err != nil {
				return err
			}
			if !rep.OK() {
				n := 0
				for _, c := range rep.Checks {
					if c.Status == agent.Fail {
						n++
					}
				}
				return fmt.Errorf("trust doctor: %d check(s) failed for %s", n, o.Host)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Host, "host", "", "the Outpost registry as images name it: <ip-or-name>:<port> (required)")
	f.StringVar(&o.Root, "root", "", "prefix of every node path, e.g. /host when the node's filesystem is mounted there")
	f.StringVar(&o.ContainerdConfig, "containerd-config", agent.DefaultContainerdConfig, "containerd's config file")
	f.StringVar(&o.ContainerdCertsDir, "containerd-certs-dir", agent.DefaultContainerdCertsDir, "containerd's certs directory (its config_path)")
	f.StringSliceVar(&o.MirrorOf, "mirror-of", nil, "upstream registry host that should be mirrored (repeatable)")
	f.StringVar(&o.CRISocket, "cri-socket", "", "also check this CRI socket (the pre-pull agent's), a path in this process's filesystem")
	_ = cmd.MarkFlagRequired("host")
	return cmd
}

// printResult prints one line per file that install or uninstall touched
// or considered.
func printResult(w io.Writer, r agent.Result) {
	for _, c := range r.Changes {
		line := fmt.Sprintf("%-9s %s", c.Action, c.Path)
		if c.Note != "" {
			line += " (" + c.Note + ")"
		}
		fmt.Fprintln(w, line)
	}
}
