package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-registry/outpost/internal/server"
	"github.com/outpost-registry/outpost/internal/storage/gc"
	"github.com/outpost-registry/outpost/internal/storage/retention"
)

// joined renders a JSON list of strings as "a, b".
func joined(v any) string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		out = append(out, cell(x))
	}
	return strings.Join(out, ", ")
}

var retentionTable = table{
	headers: []string{"NAME", "REPOSITORIES", "KEEP NEWEST", "KEEP TAGS", "KEEP SEMVER", "KEEP WITHIN", "UNTAGGED OLDER THAN", "SOURCE"},
	rows: func(v any) [][]string {
		list, ok := v.([]any)
		if !ok {
			list = []any{v}
		}
		rows := [][]string{}
		for _, p := range list {
			source := cell(field(p, "source"))
			if source == "" {
				source = "api"
			}
			rows = append(rows, []string{cell(field(p, "name")), joined(field(p, "repositories")), cell(field(p, "keepNewest")),
				joined(field(p, "keepTags")), cell(field(p, "keepSemver")), cell(field(p, "keepWithin")), cell(field(p, "untaggedOlderThan")), source})
		}
		return rows
	},
}

// retentionRunTable lists, per repository, the tags removed and what the
// collection then removed.
var retentionRunTable = table{
	headers: []string{"REPOSITORY", "TAGS REMOVED", "MANIFESTS", "LINKS"},
	rows: func(v any) [][]string {
		rows := [][]string{}
		list, _ := field(v, "removed").([]any)
		for _, sw := range list {
			ms, _ := field(sw, "manifests").([]any)
			ls, _ := field(sw, "links").([]any)
			rows = append(rows, []string{cell(field(sw, "repository")), joined(field(sw, "tags")), fmt.Sprint(len(ms)), fmt.Sprint(len(ls))})
		}
		return rows
	},
}

func newRetentionCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "retention",
		Short: "Manage retention policies: which tags garbage collection removes, per repository pattern",
		Long: `A retention policy covers repository patterns ("*", "team/*", names); the first
policy covering a repository applies to it (those of the configuration file
first, then those made here, by name). Its rules keep tags: the newest N
(--keep-newest), those matching glob patterns (--keep-tags 'v*'), semantic
versions in a range (--keep-semver '>=1.4, <2'), and those pushed within a
duration (--keep-within 720h). A tag no rule keeps is removed; a policy
without tag rules removes no tag. --untagged-older-than keeps untagged
manifests that long (at least gc.gracePeriod) before they are collected.

What a site must keep is never removed: at a connected registry, every tag
of its synced repositories (its parent decides there) and the images of the
staging releases assigned to it; at a parent, the images of releases not yet
installed; and tags of referrers (signatures, SBOMs) of kept images.
Policies are applied by every garbage collection (gc.schedule, 'outpost gc
run') and by 'outpost retention run'.`,
	}
	cmd.AddCommand(newRetentionCreate(), newRetentionList(), newRetentionShow(), newRetentionUpdate(), newRetentionDelete(), newRetentionRun())
	return cmd
}

type retentionOptions struct {
	clientOptions
	outputOptions
	name       string
	repos      []string
	keepNewest int
	keepTags   []string
	clearTags  bool
	semver     string
	within     time.Duration
	untagged   time.Duration
	yes        bool
}

func (o *retentionOptions) bindRules(cmd *cobra.Command) {
	cmd.Flags().IntVar(&o.keepNewest, "keep-newest", 0, "keep the N most recently pushed tags")
	listFlag(cmd.Flags(), &o.keepTags, listNames, "keep-tags", "keep tags matching these glob patterns (quote them: 'v*')")
	cmd.Flags().StringVar(&o.semver, "keep-semver", "", "keep tags that are semantic versions in this range ('>=1.4, <2', '~2.3', '^1')")
	cmd.Flags().DurationVar(&o.within, "keep-within", 0, "keep tags pushed within this duration (720h)")
	cmd.Flags().DurationVar(&o.untagged, "untagged-older-than", 0, "remove untagged manifests once older than this (default gc.gracePeriod)")
}

func newRetentionCreate() *cobra.Command {
	o := &retentionOptions{}
	cmd := &cobra.Command{
		Use:     "create --name NAME --repository PATTERN... [--keep-newest N] [--keep-tags GLOB...] [--keep-semver RANGE] [--keep-within D] [--untagged-older-than D]",
		Short:   "Create a retention policy",
		Example: `  outpost retention create --name apps --repository apps/* --keep-newest 10 --keep-tags 'v*' latest --untagged-older-than 24h`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p := retention.Policy{Name: o.name, Repositories: o.repos, KeepNewest: o.keepNewest, KeepTags: o.keepTags, KeepSemver: o.semver,
				KeepWithin: retention.Duration(o.within), UntaggedOlderThan: retention.Duration(o.untagged)}
			if err := p.Validate(); err != nil {
				return err
			}
			return call[retention.Policy](cmd, &o.clientOptions, &o.outputOptions, http.MethodPost, "/api/v1/retention", p, retentionTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	cmd.Flags().StringVarP(&o.name, "name", "n", "", "policy name")
	listFlag(cmd.Flags(), &o.repos, listNames, "repository", "repository patterns the policy covers (*, team/*, names)")
	o.bindRules(cmd)
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("repository")
	return cmd
}

func newRetentionList() *cobra.Command {
	o := &retentionOptions{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List retention policies in the order they apply",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call[[]retention.Policy](cmd, &o.clientOptions, &o.outputOptions, http.MethodGet, "/api/v1/retention", nil, retentionTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	return cmd
}

func newRetentionShow() *cobra.Command {
	o := &retentionOptions{}
	cmd := &cobra.Command{
		Use:   "show --name NAME",
		Short: "Show a retention policy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call[retention.Policy](cmd, &o.clientOptions, &o.outputOptions, http.MethodGet, "/api/v1/retention/"+url.PathEscape(o.name), nil, retentionTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	cmd.Flags().StringVarP(&o.name, "name", "n", "", "policy name")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newRetentionUpdate() *cobra.Command {
	o := &retentionOptions{}
	cmd := &cobra.Command{
		Use:   "update --name NAME [--repository PATTERN...] [--keep-newest N] [--keep-tags GLOB... | --clear-keep-tags] [--keep-semver RANGE] [--keep-within D] [--untagged-older-than D]",
		Short: "Change the repositories or rules of a retention policy",
		Long: `Update a retention policy made with 'outpost retention create': each flag
given replaces that part of the policy (--keep-newest 0, --keep-semver '' and
--keep-within 0 turn a rule off; --clear-keep-tags empties the patterns).
Policies of the configuration file are changed there.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var u server.RetentionUpdate
			f := cmd.Flags()
			if f.Changed("repository") {
				u.Repositories = o.repos
			}
			if f.Changed("keep-newest") {
				u.KeepNewest = &o.keepNewest
			}
			switch {
			case o.clearTags:
				u.KeepTags = &[]string{}
			case f.Changed("keep-tags"):
				u.KeepTags = &o.keepTags
			}
			if f.Changed("keep-semver") {
				u.KeepSemver = &o.semver
			}
			if f.Changed("keep-within") {
				d := retention.Duration(o.within)
				u.KeepWithin = &d
			}
			if f.Changed("untagged-older-than") {
				d := retention.Duration(o.untagged)
				u.UntaggedOlderThan = &d
			}
			return call[retention.Policy](cmd, &o.clientOptions, &o.outputOptions, http.MethodPatch, "/api/v1/retention/"+url.PathEscape(o.name), u, retentionTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	cmd.Flags().StringVarP(&o.name, "name", "n", "", "policy name")
	listFlag(cmd.Flags(), &o.repos, listNames, "repository", "repository patterns the policy covers (replaces them)")
	cmd.Flags().BoolVar(&o.clearTags, "clear-keep-tags", false, "remove every --keep-tags pattern")
	o.bindRules(cmd)
	cmd.MarkFlagsMutuallyExclusive("keep-tags", "clear-keep-tags")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newRetentionDelete() *cobra.Command {
	o := &retentionOptions{}
	cmd := &cobra.Command{
		Use:   "delete --name NAME --yes",
		Short: "Delete a retention policy (its tags are no longer removed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !o.yes {
				return fmt.Errorf("deleting retention policy %q needs --yes", o.name)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			return c.Do(cmd.Context(), http.MethodDelete, "/api/v1/retention/"+url.PathEscape(o.name), nil, nil)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	cmd.Flags().StringVarP(&o.name, "name", "n", "", "policy name")
	cmd.Flags().BoolVarP(&o.yes, "yes", "y", false, "do not prompt for confirmation")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newRetentionRun() *cobra.Command {
	o := &struct {
		clientOptions
		outputOptions
		dry   bool
		names []string
	}{}
	cmd := &cobra.Command{
		Use:   "run [--dry-run] [--name NAME...]",
		Short: "Apply the retention policies now and collect what they release",
		Long: `Apply the retention policies (or only those named) and run a garbage
collection, printing per repository the tags removed and the manifests and
blob links collected; -o json prints the whole collection report. With
--dry-run nothing is removed: the list is what the policies would remove.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call[gc.Report](cmd, &o.clientOptions, &o.outputOptions, http.MethodPost, "/api/v1/retention/runs",
				server.RetentionRunRequest{DryRun: o.dry, Policies: o.names}, retentionRunTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	cmd.Flags().BoolVar(&o.dry, "dry-run", false, "list what the policies would remove, remove nothing")
	listFlag(cmd.Flags(), &o.names, listNames, "name", "apply only these policies")
	return cmd
}
