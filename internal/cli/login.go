package cli

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/outpost-registry/outpost/internal/client"
)

type loginOptions struct {
	username      string
	password      string
	passwordStdin bool
	caFile        string
}

func newLoginCommand() *cobra.Command {
	o := &loginOptions{}
	cmd := &cobra.Command{
		Use:   "login <server>",
		Short: "Log in to an Outpost server and save the credential",
		Long: `Log in to an Outpost server. The credential (the admin, or a token name and
one of its passwords) is checked against the server and saved, mode 0600, in
the user's config directory (~/.config/outpost/config.json); the server
becomes the default of later commands.

OUTPOST_SERVER, OUTPOST_USERNAME and OUTPOST_PASSWORD override the saved
values for any command.`,
		Example: `  outpost login https://registry.example.com:5000 -u admin -p "$(cat outpost-data/admin-password)"
  echo "$PASSWORD" | outpost login localhost:5000 -u mytoken --password-stdin`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			server := os.Getenv("OUTPOST_SERVER")
			if len(args) == 1 {
				server = args[0]
			}
			server, err := client.NormalizeServer(server)
			if err != nil {
				return err
			}
			user := o.username
			if user == "" {
				user = os.Getenv("OUTPOST_USERNAME")
			}
			pw := o.password
			if o.passwordStdin {
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && line == "" {
					return fmt.Errorf("read password from stdin: %w", err)
				}
				pw = strings.TrimRight(line, "\r\n")
			}
			if pw == "" {
				pw = os.Getenv("OUTPOST_PASSWORD")
			}
			if user == "" || pw == "" {
				return errors.New("a username (-u) and password (-p or --password-stdin) are required")
			}
			c, err := client.New(server, user, pw, o.caFile)
			if err != nil {
				return err
			}
			if err := c.CheckLogin(cmd.Context()); err != nil {
				return err
			}
			cfg, err := client.LoadConfig()
			if err != nil {
				return err
			}
			caFile := o.caFile
			if caFile != "" {
				// Stored for later commands run from anywhere: a path
				// relative to today's directory would not be found.
				if caFile, err = filepath.Abs(caFile); err != nil {
					return fmt.Errorf("--ca-file: %w", err)
				}
			}
			cfg.Servers[server] = client.Credential{Username: user, Password: pw, CAFile: caFile}
			cfg.Current = server
			if err := cfg.Save(); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Login succeeded: %s as %s\n", server, user)
			return err
		},
	}
	cmd.Flags().StringVarP(&o.username, "username", "u", "", "user: admin or a token name")
	cmd.Flags().StringVarP(&o.password, "password", "p", "", "password")
	cmd.Flags().BoolVar(&o.passwordStdin, "password-stdin", false, "read the password from standard input")
	cmd.Flags().StringVar(&o.caFile, "ca-file", "", "CA certificate to trust for this server")
	return cmd
}
