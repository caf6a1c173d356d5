package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-registry/outpost/internal/agent"
)

type prePullOptions struct {
	agent.PrePullOptions
	passwordFile string
	criSocket    string
	kubeLabels   bool
}

func newTrustPrePull() *cobra.Command {
	o := &prePullOptions{}
	cmd := &cobra.Command{
		Use:   "pre-pull --server HOST:PORT --ca-file FILE --node-name NODE --username TOKEN --password-file FILE [--cri-socket SOCK]",
		Short: "Pull the site's --pre-pull staging jobs into this node's container runtime (node agent)",
		Long: `Run the node stage of pre-pull staging jobs (outpost stage create --pre-pull)
until SIGTERM. Every --interval the agent asks the site's registry (--server,
trusted with --ca-file) for the jobs it has staged; for each job whose node
selector matches the node's labels (--node-label, and with
--node-labels-from-api those the Kubernetes API has for --node-name), it holds one of the site's pull slots (the
site lets sync.prePullNodes nodes pull at once), pulls every image by
digest through the CRI image service on --cri-socket (containerd keeps them
in its k8s.io namespace, for the node's platform), --concurrency images at
a time, and counts an image only when the runtime reports it with the
staged digest. It reports the node's state to the site (Pending, Pulling,
Pulled, Failed with the reason), which sends the counts to the root:
outpost stage show --name R --nodes.

It authenticates with the site's node token (outpost connected-registry
node-token --name SITE), never the admin; the same credential goes to the
runtime for the pulls. Images are named --host/<repository>@<digest>
(default: the host:port of --server), the name that trust install makes
containerd trust. Failures (the site gone, the runtime down) are reported
and retried every --interval. A job deleted at the root stops its pulls;
images already pulled stay, since the kubelet's image GC owns them.`,
		Example: `  outpost trust pre-pull --server 10.96.0.50:443 --ca-file /ca/ca.crt --node-name "$NODE_NAME" \
    --username factory-node-token --password-file /token/password --cri-socket /run/containerd/containerd.sock`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.passwordFile != "" {
				b, err := os.ReadFile(o.passwordFile)
				if err != nil {
					return fmt.Errorf("--password-file: %w", err)
				}
				o.Password = strings.TrimSpace(string(b))
			}
			if o.Username == "" || o.Password == "" {
				return errors.New("give --username and --password-file: the site's node token (outpost connected-registry node-token)")
			}
			rt, err := agent.DialCRI(o.criSocket)
			if err != nil {
				return err
			}
			defer rt.Close()
			o.Runtime = rt
			if o.kubeLabels {
				k, err := agent.NewKubeNode("", "", "")
				if err != nil {
					return err
				}
				o.LabelSource = func(ctx context.Context) (map[string]string, error) { return k.Labels(ctx, o.Node) }
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			if err := agent.PrePull(ctx, o.PrePullOptions, log); err != nil {
				return fmt.Errorf("trust pre-pull: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Server, "server", "", "the site's registry, [https://]host:port (required)")
	f.StringVar(&o.Host, "host", "", "the registry as images name it on this node (default: host:port of --server)")
	f.StringVar(&o.CAFile, "ca-file", "", "CA certificate (PEM) of the site's registry")
	f.StringVar(&o.Node, "node-name", os.Getenv("NODE_NAME"), "this node's name (default: $NODE_NAME)")
	f.StringToStringVar(&o.Labels, "node-label", nil, "this node's labels, matched against a job's node selector (k=v, repeatable)")
	f.BoolVar(&o.kubeLabels, "node-labels-from-api", false, "read this node's labels from the Kubernetes API every round (in a pod whose service account may get nodes)")
	f.StringVarP(&o.Username, "username", "u", "", "the site's node token")
	f.StringVar(&o.passwordFile, "password-file", "", "file holding the node token's password")
	f.StringVar(&o.criSocket, "cri-socket", agent.DefaultCRISocket, "the container runtime's CRI socket")
	f.IntVar(&o.Concurrency, "concurrency", 2, "images pulled at once on this node")
	f.DurationVar(&o.Interval, "interval", 10*time.Second, "how often the site is asked for jobs (and failures retried)")
	_ = cmd.MarkFlagRequired("server")
	return cmd
}
