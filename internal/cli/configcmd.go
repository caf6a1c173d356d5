package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check and show the server configuration",
	}
	o := &serveOptions{}
	validate := &cobra.Command{
		Use:   "validate",
		Short: "Validate a config file and flags, printing the effective configuration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.load(cmd.Flags())
			if err != nil {
				return err
			}
			for _, w := range o.warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
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
	cmd.AddCommand(validate)
	return cmd
}
