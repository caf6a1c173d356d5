package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/outpost-registry/outpost/internal/auth"
)

// parseGrants turns grouped "--repository R action…" values into grants.
func parseGrants(flag string, values []string, needActions bool) ([]auth.RepositoryGrant, error) {
	var out []auth.RepositoryGrant
	for _, v := range values {
		parts := strings.Fields(v)
		if len(parts) == 0 {
			return nil, fmt.Errorf("%s: a repository name is required", flag)
		}
		g := auth.RepositoryGrant{Repository: parts[0]}
		for _, a := range parts[1:] {
			act, err := auth.ParseAction(a)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", flag, parts[0], err)
			}
			g.Actions = append(g.Actions, act)
		}
		if needActions && len(g.Actions) == 0 {
			return nil, fmt.Errorf("%s %s: list the actions after the repository, e.g. %s %s content/read metadata/read", flag, parts[0], flag, parts[0])
		}
		out = append(out, g)
	}
	return out, nil
}

var scopeMapTable = table{
	headers: []string{"NAME", "DESCRIPTION", "REPOSITORIES", "BUILT IN"},
	rows: func(v any) [][]string {
		list, ok := v.([]any)
		if !ok {
			list = []any{v}
		}
		rows := [][]string{}
		for _, item := range list {
			var repos []string
			if rs, ok := field(item, "repositories").([]any); ok {
				for _, r := range rs {
					var acts []string
					if as, ok := field(r, "actions").([]any); ok {
						for _, a := range as {
							acts = append(acts, cell(a))
						}
					}
					repos = append(repos, cell(field(r, "repository"))+"="+strings.Join(acts, ","))
				}
			}
			rows = append(rows, []string{cell(field(item, "name")), cell(field(item, "description")), strings.Join(repos, " "), cell(field(item, "builtIn"))})
		}
		return rows
	},
}

func newScopeMapCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scope-map",
		Short: "Manage scope maps: named lists of repository actions that tokens are bound to",
	}
	cmd.AddCommand(newScopeMapCreate(), newScopeMapList(), newScopeMapShow(), newScopeMapUpdate(), newScopeMapDelete())
	return cmd
}

type scopeMapOptions struct {
	clientOptions
	outputOptions
	name        string
	description string
	repos       []string
	add         []string
	remove      []string
	yes         bool
}

func newScopeMapCreate() *cobra.Command {
	o := &scopeMapOptions{}
	cmd := &cobra.Command{
		Use:   "create --name NAME --repository REPO ACTION... [--repository REPO2 ACTION...]",
		Short: "Create a scope map",
		Long: `Create a scope map. Actions: content/read, content/write, content/delete,
metadata/read, metadata/write. A repository ending in /* covers everything
below it; * covers every repository.`,
		Example: `  outpost scope-map create --name team-a-pull --repository team-a/* content/read metadata/read --description "Team A pulls"`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			grants, err := parseGrants("--repository", o.repos, true)
			if err != nil {
				return err
			}
			if err := checkQuery[auth.ScopeMap](&o.outputOptions); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			var out auth.ScopeMap
			req := auth.ScopeMapRequest{Name: o.name, Description: o.description, Repositories: grants}
			if err := c.Do(cmd.Context(), http.MethodPost, "/api/v1/scope-maps", req, &out); err != nil {
				return err
			}
			return o.render(cmd.OutOrStdout(), out, scopeMapTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	cmd.Flags().StringVarP(&o.name, "name", "n", "", "scope map name (5-50 letters, digits, - and _)")
	cmd.Flags().StringVar(&o.description, "description", "", "description")
	listFlag(cmd.Flags(), &o.repos, listGroup, "repository", "repository followed by its actions")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("repository")
	return cmd
}

func newScopeMapList() *cobra.Command {
	o := &scopeMapOptions{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List scope maps, the built-in ones included",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call[[]auth.ScopeMap](cmd, &o.clientOptions, &o.outputOptions, http.MethodGet, "/api/v1/scope-maps", nil, scopeMapTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	return cmd
}

func newScopeMapShow() *cobra.Command {
	o := &scopeMapOptions{}
	cmd := &cobra.Command{
		Use:   "show --name NAME",
		Short: "Show a scope map",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call[auth.ScopeMap](cmd, &o.clientOptions, &o.outputOptions, http.MethodGet, "/api/v1/scope-maps/"+url.PathEscape(o.name), nil, scopeMapTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	cmd.Flags().StringVarP(&o.name, "name", "n", "", "scope map name")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newScopeMapUpdate() *cobra.Command {
	o := &scopeMapOptions{}
	cmd := &cobra.Command{
		Use:   "update --name NAME [--add-repository REPO ACTION...] [--remove-repository REPO ACTION...] [--description D]",
		Short: "Add or remove repository actions, or change the description",
		Long: `Update a scope map. --add-repository adds actions to a repository (adding
the repository if needed); --remove-repository removes the listed actions, or
the whole repository when no action is listed. Built-in scope maps are
read-only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			add, err := parseGrants("--add-repository", o.add, true)
			if err != nil {
				return err
			}
			remove, err := parseGrants("--remove-repository", o.remove, false)
			if err != nil {
				return err
			}
			req := auth.ScopeMapUpdate{Add: add, Remove: remove}
			if cmd.Flags().Changed("description") {
				req.Description = &o.description
			}
			return call[auth.ScopeMap](cmd, &o.clientOptions, &o.outputOptions, http.MethodPatch, "/api/v1/scope-maps/"+url.PathEscape(o.name), req, scopeMapTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	cmd.Flags().StringVarP(&o.name, "name", "n", "", "scope map name")
	cmd.Flags().StringVar(&o.description, "description", "", "new description")
	listFlag(cmd.Flags(), &o.add, listGroup, "add-repository", "repository followed by actions to add")
	listFlag(cmd.Flags(), &o.remove, listGroup, "remove-repository", "repository followed by actions to remove (none: the whole repository)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newScopeMapDelete() *cobra.Command {
	o := &scopeMapOptions{}
	cmd := &cobra.Command{
		Use:   "delete --name NAME --yes",
		Short: "Delete a scope map that no token uses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !o.yes {
				return fmt.Errorf("deleting scope map %q needs --yes", o.name)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			return c.Do(cmd.Context(), http.MethodDelete, "/api/v1/scope-maps/"+url.PathEscape(o.name), nil, nil)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	cmd.Flags().StringVarP(&o.name, "name", "n", "", "scope map name")
	cmd.Flags().BoolVarP(&o.yes, "yes", "y", false, "do not prompt for confirmation")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}
