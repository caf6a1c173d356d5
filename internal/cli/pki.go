package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

func newPKICommand() *cobra.Command {
	cmd := &cobra.Command{Use: "pki", Short: "Inspect the built-in certificate authority"}
	var data string
	ca := &cobra.Command{
		Use:   "ca [--data DIR]",
		Short: "Print the CA certificate that clients and nodes must trust",
		Long: `Print the built-in CA certificate (PEM) of the Outpost whose data directory is
--data. A running server also publishes it at /api/v1/pki/ca.crt.`,
		Example: `  outpost pki ca > ca.crt
  outpost trust install --host registry.local:5000 --ca-file ca.crt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := os.ReadFile(filepath.Join(data, "pki", "ca.crt"))
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("no CA in %s: start `outpost serve --data %s` once (tls mode auto) to create it", data, data)
			}
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	ca.Flags().StringVar(&data, "data", "./outpost-data", "data directory of the server")
	cmd.AddCommand(ca)
	return cmd
}
