package cli

import (
	"net/http"

	"github.com/spf13/cobra"

	"github.com/outpost-registry/outpost/internal/protocol"
)

func newCRNodeToken() *cobra.Command {
	o := &crOptions{}
	cmd := &cobra.Command{
		Use:   "node-token --name NAME [--generate-password 1|2]",
		Short: "Create the node token of a connected registry (its node agents pre-pull with it), or give it a new password",
		Long: `Create <name>-node-token, bound to <name>-node-scope-map, and make it a client
token of the connected registry, so that the site authenticates it. Its
node agents (outpost trust pre-pull, the chart's prePull) pull images and
report pre-pull progress with it: the scope map grants content/read and
metadata/read on the repositories the site serves and stages (kept up to
date as staging jobs come and go) and gateway/<name>/nodes/write, and
nothing else. The admin credential never goes to the nodes.

When the token exists, the password of slot --generate-password (1 by
default) is generated again: the old value of that slot stops working at
the site with its next heartbeat. The password is printed once.`,
		Example: `  outpost connected-registry node-token --name factory --query password -o tsv > node-token-password`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := protocol.NodeTokenRequest{GeneratePassword: o.generate}
			return call[protocol.NodeToken](cmd, &o.clientOptions, &o.outputOptions, http.MethodPost, crPath(o.name)+"/node-token", req, table{})
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	o.bindName(cmd)
	cmd.Flags().IntVar(&o.generate, "generate-password", 1, "password slot to generate: 1 or 2")
	return cmd
}
