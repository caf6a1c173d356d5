package cli

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/outpost-registry/outpost/internal/auth"
	"github.com/outpost-registry/outpost/internal/protocol"
)

var crListTable = table{
	headers: []string{"NAME", "MODE", "CONNECTION STATE", "PARENT", "LOGIN SERVER", "LAST SYNC(UTC)", "DISK"},
	rows: func(v any) [][]string {
		rows := listRows("name", "mode", "connectionState", "parent", "loginServer", "lastSyncTime")(v)
		list, ok := v.([]any)
		if !ok {
			list = []any{v}
		}
		for i, item := range list {
			rows[i] = append(rows[i], diskCell(field(item, "volume")))
		}
		return rows
	},
}

// diskCell renders a reported volume as "used/total (N%)", with FULL when
// what the registry must keep fills it; empty when none was reported.
func diskCell(v any) string {
	used, ok1 := field(v, "usedBytes").(float64)
	total, ok2 := field(v, "totalBytes").(float64)
	if !ok1 || !ok2 || total <= 0 {
		return ""
	}
	out := fmt.Sprintf("%s/%s (%.0f%%)", humanBytes(used), humanBytes(total), 100*used/total)
	if full, _ := field(v, "full").(bool); full {
		out += " FULL"
	}
	return out
}

// humanBytes renders n bytes in binary units (1.5GiB).
func humanBytes(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f%s", n, units[i])
	}
	return fmt.Sprintf("%.1f%s", n, units[i])
}

var crShowTable = table{
	headers: []string{"NAME", "MODE", "CONNECTION STATE", "PARENT", "LOGIN SERVER", "LAST SYNC(UTC)", "SYNC SCHEDULE", "SYNC WINDOW"},
	rows:    listRows("name", "mode", "connectionState", "parent", "loginServer", "lastSyncTime", "syncSchedule", "syncWindow"),
}

func crPath(name string) string { return "/api/v1/connected-registries/" + url.PathEscape(name) }

type crOptions struct {
	clientOptions
	outputOptions
	name, mode, parent, schedule, window, ttl, logLevel string
	protocol                                            string
	repos, clientTokens, notifications                  []string
	addTokens, removeTokens, addNotif, removeNotif      []string
	add, remove                                         []string
	generate                                            int
	cleanup, yes                                        bool
}

func newConnectedRegistryCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "connected-registry",
		Aliases: []string{"cr"},
		Short:   "Manage connected registries: the edge registries that sync from this one",
	}
	perms := &cobra.Command{Use: "permissions", Short: "Show or change the repositories a connected registry syncs"}
	perms.AddCommand(newCRPermissionsShow(), newCRPermissionsUpdate())
	cmd.AddCommand(newCRCreate(), newCRList(), newCRShow(), newCRUpdate(), newCRDelete(), newCRDeactivate(),
		newCRGetSettings(), newCRListClientTokens(), newCRResync(), newCRNodeToken(), perms)
	return cmd
}

func (o *crOptions) bindName(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.name, "name", "n", "", "connected registry name")
	_ = cmd.MarkFlagRequired("name")
}

func newCRCreate() *cobra.Command {
	o := &crOptions{}
	cmd := &cobra.Command{
		Use:   "create --name NAME --repository REPO [REPO...] [flags]",
		Short: "Create a connected registry with its sync token and sync scope map",
		Long: `Create a connected registry. Its sync scope map (<name>-sync-scope-map) and
sync token (<name>-sync-token) are created with it; every ancestor's sync
scope map gains its repositories. A token already named <name>-sync-token
becomes the sync token: it is bound to the sync scope map and enabled, and
a note on standard error says so. Use get-settings to obtain the connection
string to deploy it with.`,
		Example: `  outpost connected-registry create --name factory --mode ReadWrite --repository apps/web apps/api --yes
  outpost connected-registry create --name line1 --parent factory --repository apps/web --sync-schedule "0 * * * *" --sync-window PT3H --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkQuery[protocol.CreateAnswer](&o.outputOptions); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			req := protocol.CreateRequest{
				Name: o.name, Mode: o.mode, Parent: o.parent, Repositories: o.repos,
				ClientTokens: o.clientTokens, SyncSchedule: o.schedule, SyncWindow: o.window,
				SyncMessageTTL: o.ttl, LogLevel: o.logLevel, Notifications: o.notifications,
			}
			var out protocol.CreateAnswer
			if err := c.Do(cmd.Context(), http.MethodPost, "/api/v1/connected-registries", req, &out); err != nil {
				return err
			}
			for _, n := range out.Notes {
				fmt.Fprintln(cmd.ErrOrStderr(), "Note: "+n+".")
			}
			return o.render(cmd.OutOrStdout(), out, crShowTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	o.bindName(cmd)
	f := cmd.Flags()
	listFlag(f, &o.repos, listNames, "repository", "repositories to sync")
	f.StringVar(&o.mode, "mode", "ReadOnly", "ReadOnly or ReadWrite")
	f.StringVar(&o.parent, "parent", "", "parent connected registry (default: this registry)")
	f.StringVar(&o.schedule, "sync-schedule", protocol.DefaultSchedule, "cron schedule (5 fields) of sync runs")
	f.StringVar(&o.window, "sync-window", "", "ISO 8601 duration a run may last, PT1H to P7D (default: continuous)")
	f.StringVar(&o.ttl, "sync-message-ttl", protocol.DefaultTTL, "ISO 8601 duration undelivered messages are kept, P1D to P90D")
	f.StringVar(&o.logLevel, "log-level", "Information", "Debug, Information, Warning, Error or None")
	listFlag(f, &o.clientTokens, listNames, "client-tokens", "tokens that local clients use at the connected registry (at most 20)", "client-token")
	listFlag(f, &o.notifications, listNames, "notifications", "events to report, repository:tag:action with action push, delete or *", "notification")
	f.BoolVarP(&o.yes, "yes", "y", false, "do not prompt for confirmation")
	_ = cmd.MarkFlagRequired("repository")
	return cmd
}

func newCRList() *cobra.Command {
	o := &crOptions{}
	cmd := &cobra.Command{
		Use:   "list [--parent NAME]",
		Short: "List connected registries",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			path := "/api/v1/connected-registries"
			if o.parent != "" {
				path += "?parent=" + url.QueryEscape(o.parent)
			}
			var out []protocol.ConnectedRegistry
			if err := c.Do(cmd.Context(), http.MethodGet, path, nil, &out); err != nil {
				return err
			}
			return o.render(cmd.OutOrStdout(), out, crListTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	cmd.Flags().StringVar(&o.parent, "parent", "", "only the children of this connected registry")
	return cmd
}

func newCRShow() *cobra.Command {
	o := &crOptions{}
	cmd := &cobra.Command{
		Use:   "show --name NAME",
		Short: "Show a connected registry with its settings and status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call[protocol.ConnectedRegistry](cmd, &o.clientOptions, &o.outputOptions, http.MethodGet, crPath(o.name), nil, crShowTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	o.bindName(cmd)
	return cmd
}

func newCRUpdate() *cobra.Command {
	o := &crOptions{}
	cmd := &cobra.Command{
		Use:   "update --name NAME [flags]",
		Short: "Change the settings of a connected registry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			u := protocol.Update{
				SyncSchedule: o.schedule, SyncMessageTTL: o.ttl, LogLevel: o.logLevel,
				AddClientTokens: o.addTokens, RemoveClientTokens: o.removeTokens,
				AddNotifications: o.addNotif, RemoveNotif: o.removeNotif,
			}
			if cmd.Flags().Changed("sync-window") {
				u.SyncWindow = &o.window
			}
			return call[protocol.ConnectedRegistry](cmd, &o.clientOptions, &o.outputOptions, http.MethodPatch, crPath(o.name), u, crShowTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	o.bindName(cmd)
	f := cmd.Flags()
	f.StringVar(&o.schedule, "sync-schedule", "", "cron schedule (5 fields)")
	f.StringVar(&o.window, "sync-window", "", "ISO 8601 duration, PT1H to P7D; empty for continuous sync")
	f.StringVar(&o.ttl, "sync-message-ttl", "", "ISO 8601 duration, P1D to P90D")
	f.StringVar(&o.logLevel, "log-level", "", "Debug, Information, Warning, Error or None")
	listFlag(f, &o.addTokens, listNames, "add-client-tokens", "client tokens to add", "add-client-token")
	listFlag(f, &o.removeTokens, listNames, "remove-client-tokens", "client tokens to remove", "remove-client-token")
	listFlag(f, &o.addNotif, listNames, "add-notifications", "notification patterns to add", "add-notification")
	listFlag(f, &o.removeNotif, listNames, "remove-notifications", "notification patterns to remove", "remove-notification")
	return cmd
}

func newCRDelete() *cobra.Command {
	o := &crOptions{}
	cmd := &cobra.Command{
		Use:   "delete --name NAME [--cleanup] --yes",
		Short: "Delete a connected registry (one without children)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !o.yes {
				return fmt.Errorf("deleting connected registry %q needs --yes", o.name)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			path := crPath(o.name)
			if o.cleanup {
				path += "?cleanup=true"
			}
			return c.Do(cmd.Context(), http.MethodDelete, path, nil, nil)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.bindName(cmd)
	cmd.Flags().BoolVar(&o.cleanup, "cleanup", false, "also delete the sync token and sync scope map")
	cmd.Flags().BoolVarP(&o.yes, "yes", "y", false, "do not prompt for confirmation")
	return cmd
}

func newCRDeactivate() *cobra.Command {
	o := &crOptions{}
	cmd := &cobra.Command{
		Use:   "deactivate --name NAME --yes",
		Short: "Mark a connected registry Inactive so that a new deployment can activate it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !o.yes {
				return fmt.Errorf("deactivating connected registry %q needs --yes", o.name)
			}
			return call[protocol.ConnectedRegistry](cmd, &o.clientOptions, &o.outputOptions, http.MethodPost, crPath(o.name)+"/deactivate", nil, crShowTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	o.bindName(cmd)
	cmd.Flags().BoolVarP(&o.yes, "yes", "y", false, "do not prompt for confirmation")
	return cmd
}

func newCRGetSettings() *cobra.Command {
	o := &crOptions{}
	cmd := &cobra.Command{
		Use:   "get-settings --name NAME --parent-protocol https|http [--generate-password 1|2 --yes]",
		Short: "Print the connection string of a connected registry",
		Long: `Print the settings a connected registry is deployed with, as JSON whose
connectionString field holds the connection string (--query also accepts
az's name for it, ACR_REGISTRY_CONNECTION_STRING). --generate-password 1
or 2 regenerates that password of the sync token (the old value stops
working at once) and puts it in the connection string; without it the
password is omitted. A --query that selects nothing fails, and is refused
before any password is regenerated.`,
		Example: `  outpost connected-registry get-settings --name factory --parent-protocol https --generate-password 1 --yes --query connectionString -o tsv > cs
  outpost connected-registry get-settings --name factory --parent-protocol https --generate-password 1 --yes --query ACR_REGISTRY_CONNECTION_STRING --output tsv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.generate != 0 && !o.yes {
				return fmt.Errorf("--generate-password %d replaces password%d of the sync token; confirm with --yes", o.generate, o.generate)
			}
			if o.protocol == "" {
				return errors.New("--parent-protocol is required: https or http")
			}
			o.aliases = settingsAliases
			if err := checkSettingsQuery(&o.outputOptions, o.generate); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			var out protocol.Settings
			req := protocol.SettingsRequest{ParentProtocol: o.protocol, GeneratePassword: o.generate}
			if err := c.Do(cmd.Context(), http.MethodPost, crPath(o.name)+"/settings", req, &out); err != nil {
				return err
			}
			if o.generate == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "The sync token password is not included: use --generate-password 1 or 2 to generate one.")
			}
			return o.render(cmd.OutOrStdout(), out, table{})
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	o.bindName(cmd)
	cmd.Flags().StringVar(&o.protocol, "parent-protocol", "", "protocol the connected registry uses to reach its parent: https or http")
	cmd.Flags().IntVar(&o.generate, "generate-password", 0, "regenerate password 1 or 2 of the sync token")
	cmd.Flags().BoolVarP(&o.yes, "yes", "y", false, "do not prompt for confirmation")
	return cmd
}

// settingsAliases are az's names of the get-settings fields.
var settingsAliases = map[string]string{"ACR_REGISTRY_CONNECTION_STRING": "connectionString"}

// checkSettingsQuery refuses, before any password is regenerated, a
// --query that names no field of the settings or selects nothing from
// the answer get-settings gives with generate: its shape is fixed (the
// password is there only when one is generated, the note only when not).
func checkSettingsQuery(o *outputOptions, generate int) error {
	if err := checkQuery[protocol.Settings](o); err != nil {
		return err
	}
	if o.query == "" {
		return nil
	}
	sample := protocol.Settings{ConnectionString: "ConnectedRegistryName=x", SyncTokenName: "x-sync-token"}
	if generate != 0 {
		sample.Password = "x"
	} else {
		sample.Note = "x"
	}
	check := *o
	check.format = "json"
	if err := check.render(io.Discard, sample, table{}); err != nil {
		return fmt.Errorf("%w (nothing was changed)", err)
	}
	return nil
}

func newCRListClientTokens() *cobra.Command {
	o := &crOptions{}
	cmd := &cobra.Command{
		Use:   "list-client-tokens --name NAME",
		Short: "List the client tokens of a connected registry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call[[]auth.TokenView](cmd, &o.clientOptions, &o.outputOptions, http.MethodGet, crPath(o.name)+"/client-tokens", nil, tokenTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	o.bindName(cmd)
	return cmd
}

var repoTable = table{headers: []string{"REPOSITORY"}, rows: func(v any) [][]string {
	rows := [][]string{}
	if list, ok := field(v, "repositories").([]any); ok {
		for _, r := range list {
			rows = append(rows, []string{cell(r)})
		}
	}
	return rows
}}

func newCRPermissionsShow() *cobra.Command {
	o := &crOptions{}
	cmd := &cobra.Command{
		Use:   "show --name NAME",
		Short: "Show the repositories a connected registry syncs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			var out protocol.ConnectedRegistry
			if err := c.Do(cmd.Context(), http.MethodGet, crPath(o.name), nil, &out); err != nil {
				return err
			}
			return o.render(cmd.OutOrStdout(), map[string]any{"name": out.Name, "mode": out.Mode, "repositories": out.Repositories}, repoTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	o.bindName(cmd)
	return cmd
}

func newCRPermissionsUpdate() *cobra.Command {
	o := &crOptions{}
	cmd := &cobra.Command{
		Use:   "update --name NAME [--add REPO...] [--remove REPO...]",
		Short: "Add or remove repositories; the sync scope maps are rewritten",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			u := protocol.Update{AddRepositories: o.add, RemoveRepositories: o.remove}
			if len(u.AddRepositories)+len(u.RemoveRepositories) == 0 {
				return errors.New("nothing to change: give --add or --remove")
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			var out protocol.ConnectedRegistry
			if err := c.Do(cmd.Context(), http.MethodPatch, crPath(o.name), u, &out); err != nil {
				return err
			}
			return o.render(cmd.OutOrStdout(), map[string]any{"name": out.Name, "mode": out.Mode, "repositories": out.Repositories}, repoTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	o.bindName(cmd)
	listFlag(cmd.Flags(), &o.add, listNames, "add", "repositories to add")
	listFlag(cmd.Flags(), &o.remove, listNames, "remove", "repositories to remove")
	return cmd
}

func newCRResync() *cobra.Command {
	o := &crOptions{}
	cmd := &cobra.Command{
		Use:   "resync --name NAME",
		Short: "Ask a connected registry to start a sync run at its next heartbeat",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call[map[string]string](cmd, &o.clientOptions, &o.outputOptions, http.MethodPost, crPath(o.name)+"/resync", nil, table{})
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	o.bindName(cmd)
	return cmd
}
