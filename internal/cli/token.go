package cli

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/outpost-registry/outpost/internal/auth"
)

var tokenTable = table{
	headers: []string{"NAME", "SCOPE MAP", "STATUS", "CREATED(UTC)", "PASSWORD1 EXPIRY", "PASSWORD2 EXPIRY"},
	rows: func(v any) [][]string {
		list, ok := v.([]any)
		if !ok {
			list = []any{v}
		}
		rows := [][]string{}
		for _, item := range list {
			exp := map[string]string{"password1": "", "password2": ""}
			if ps, ok := field(item, "credentials.passwords").([]any); ok {
				for _, p := range ps {
					e := cell(field(p, "expiry"))
					if e == "" {
						e = "never"
					}
					exp[cell(field(p, "name"))] = e
				}
			}
			rows = append(rows, []string{cell(field(item, "name")), cell(field(item, "scopeMapName")), cell(field(item, "status")), cell(field(item, "creationDate")), exp["password1"], exp["password2"]})
		}
		return rows
	},
}

func newTokenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage tokens: credentials bound to a scope map, each with two passwords",
	}
	credential := &cobra.Command{Use: "credential", Short: "Manage the passwords of a token"}
	credential.AddCommand(newTokenCredentialGenerate())
	cmd.AddCommand(newTokenCreate(), newTokenList(), newTokenShow(), newTokenUpdate(), newTokenDelete(), credential)
	return cmd
}

type tokenOptions struct {
	clientOptions
	outputOptions
	name      string
	scopeMap  string
	repos     []string
	status    string
	days      int
	password1 bool
	password2 bool
	yes       bool
}

func tokenPath(name string) string { return "/api/v1/tokens/" + url.PathEscape(name) }

func newTokenCreate() *cobra.Command {
	o := &tokenOptions{}
	cmd := &cobra.Command{
		Use:   "create --name NAME (--scope-map MAP | --repository REPO ACTION...) [--expiration-in-days N] [--status enabled|disabled]",
		Short: "Create a token; its two passwords are printed once",
		Long: `Create a token bound to a scope map. With --repository instead of --scope-map,
a scope map named <token>-scope-map is created with those repositories.
The server generates password1 and password2 and returns them only in this
answer (credentials.passwords[].value): store them now.`,
		Example: `  outpost token create --name site-puller --scope-map _repositories_pull
  outpost token create --name ci-push --repository apps/* content/read content/write metadata/read --expiration-in-days 30`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			grants, err := parseGrants("--repository", o.repos, true)
			if err != nil {
				return err
			}
			if (o.scopeMap == "") == (len(grants) == 0) {
				return errors.New("give either --scope-map or --repository")
			}
			if err := checkQuery[auth.TokenView](&o.outputOptions); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			req := auth.TokenRequest{Name: o.name, ScopeMap: o.scopeMap, Repositories: grants, Status: o.status, ExpirationInDays: o.days}
			var out auth.TokenView
			if err := c.Do(cmd.Context(), http.MethodPost, "/api/v1/tokens", req, &out); err != nil {
				return err
			}
			return o.render(cmd.OutOrStdout(), out, tokenTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	cmd.Flags().StringVarP(&o.name, "name", "n", "", "token name (5-50 letters, digits, - and _)")
	cmd.Flags().StringVar(&o.scopeMap, "scope-map", "", "scope map to bind")
	listFlag(cmd.Flags(), &o.repos, listGroup, "repository", "repository followed by its actions, instead of --scope-map")
	cmd.Flags().StringVar(&o.status, "status", "enabled", "enabled or disabled")
	cmd.Flags().IntVar(&o.days, "expiration-in-days", 0, "days until the passwords expire (0: never)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newTokenList() *cobra.Command {
	o := &tokenOptions{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tokens",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call[[]auth.TokenView](cmd, &o.clientOptions, &o.outputOptions, http.MethodGet, "/api/v1/tokens", nil, tokenTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	return cmd
}

func newTokenShow() *cobra.Command {
	o := &tokenOptions{}
	cmd := &cobra.Command{
		Use:   "show --name NAME",
		Short: "Show a token (never its passwords)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call[auth.TokenView](cmd, &o.clientOptions, &o.outputOptions, http.MethodGet, tokenPath(o.name), nil, tokenTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	cmd.Flags().StringVarP(&o.name, "name", "n", "", "token name")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newTokenUpdate() *cobra.Command {
	o := &tokenOptions{}
	cmd := &cobra.Command{
		Use:   "update --name NAME [--scope-map MAP] [--status enabled|disabled]",
		Short: "Change a token's scope map or status; takes effect on the next request",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.scopeMap == "" && o.status == "" {
				return errors.New("nothing to update: give --scope-map or --status")
			}
			if err := checkQuery[auth.TokenView](&o.outputOptions); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			var out auth.TokenView
			req := auth.TokenUpdate{ScopeMap: o.scopeMap, Status: o.status}
			if err := c.Do(cmd.Context(), http.MethodPatch, tokenPath(o.name), req, &out); err != nil {
				return err
			}
			return o.render(cmd.OutOrStdout(), out, tokenTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	cmd.Flags().StringVarP(&o.name, "name", "n", "", "token name")
	cmd.Flags().StringVar(&o.scopeMap, "scope-map", "", "scope map to bind")
	cmd.Flags().StringVar(&o.status, "status", "", "enabled or disabled")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newTokenDelete() *cobra.Command {
	o := &tokenOptions{}
	cmd := &cobra.Command{
		Use:   "delete --name NAME --yes",
		Short: "Delete a token; its credentials stop working at once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !o.yes {
				return fmt.Errorf("deleting token %q needs --yes", o.name)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			return c.Do(cmd.Context(), http.MethodDelete, tokenPath(o.name), nil, nil)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	cmd.Flags().StringVarP(&o.name, "name", "n", "", "token name")
	cmd.Flags().BoolVarP(&o.yes, "yes", "y", false, "do not prompt for confirmation")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newTokenCredentialGenerate() *cobra.Command {
	o := &tokenOptions{}
	cmd := &cobra.Command{
		Use:   "generate --name NAME (--password1 | --password2) [--expiration-in-days N]",
		Short: "Generate a new value for one password of a token; the old value stops working",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.password1 == o.password2 {
				return errors.New("give exactly one of --password1 and --password2")
			}
			slot := "password1"
			if o.password2 {
				slot = "password2"
			}
			if err := checkQuery[auth.TokenView](&o.outputOptions); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			var out auth.TokenView
			req := auth.CredentialRequest{Password: slot, ExpirationInDays: o.days}
			if err := c.Do(cmd.Context(), http.MethodPost, tokenPath(o.name)+"/credentials", req, &out); err != nil {
				return err
			}
			return o.render(cmd.OutOrStdout(), out, tokenTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	cmd.Flags().StringVarP(&o.name, "name", "n", "", "token name")
	cmd.Flags().BoolVar(&o.password1, "password1", false, "regenerate password1")
	cmd.Flags().BoolVar(&o.password2, "password2", false, "regenerate password2")
	cmd.Flags().IntVar(&o.days, "expiration-in-days", 0, "days until the new password expires (0: never)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}
