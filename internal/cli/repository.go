package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/outpost-registry/outpost/internal/catalog"
)

type repositoryOptions struct {
	clientOptions
	outputOptions
	name    string
	image   string
	detail  bool
	orderby string
	top     int
	yes     bool
}

func newRepositoryCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repository",
		Short: "Browse repositories, tags and manifests; delete and untag images",
		Long: `Browse the registry's content in the shape of az acr repository. Any token
may use these commands: each shows only the repositories its scope map lets
it metadata/read, and delete and untag need content/delete.`,
	}
	cmd.AddCommand(newRepositoryList(), newRepositoryShow(), newRepositoryShowTags(), newRepositoryShowManifests(),
		newRepositoryDelete(), newRepositoryUntag())
	return cmd
}

// repoPath is the management API path of a repository, with an optional
// suffix (_tags, _manifests/REF).
func repoPath(repo string, suffix ...string) string {
	parts := strings.Split(repo, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	for _, s := range suffix {
		parts = append(parts, url.PathEscape(s))
	}
	return "/api/v1/repositories/" + strings.Join(parts, "/")
}

// listQuery encodes --detail, --orderby and --top.
func (o *repositoryOptions) listQuery() string {
	q := url.Values{}
	if o.detail {
		q.Set("detail", "true")
	}
	if o.orderby != "" {
		q.Set("orderby", o.orderby)
	}
	if o.top > 0 {
		q.Set("top", strconv.Itoa(o.top))
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

func (o *repositoryOptions) bindList(cmd *cobra.Command, detail bool) {
	if detail {
		cmd.Flags().BoolVar(&o.detail, "detail", false, "show digest, size, platforms, push time and referrers by artifact type")
		cmd.Flags().StringVar(&o.orderby, "orderby", "", "order by push time: time_desc or time_asc (default: by name)")
	}
	cmd.Flags().IntVar(&o.top, "top", 0, "show at most N entries")
}

func (o *repositoryOptions) bindCommon(cmd *cobra.Command, name bool) {
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	if name {
		cmd.Flags().StringVarP(&o.name, "name", "n", "", "repository name")
		_ = cmd.MarkFlagRequired("name")
	}
}

func newRepositoryList() *cobra.Command {
	o := &repositoryOptions{}
	cmd := &cobra.Command{
		Use:     "list [--top N]",
		Short:   "List the repositories the caller may read",
		Example: `  outpost repository list -o table`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call[[]string](cmd, &o.clientOptions, &o.outputOptions, http.MethodGet, "/api/v1/repositories"+o.listQuery(), nil, table{})
		},
	}
	o.bindCommon(cmd, false)
	o.bindList(cmd, false)
	return cmd
}

func newRepositoryShow() *cobra.Command {
	o := &repositoryOptions{}
	cmd := &cobra.Command{
		Use:   "show --name REPO",
		Short: "Show a repository: tag and manifest counts, created and last update times",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call[catalog.Repository](cmd, &o.clientOptions, &o.outputOptions, http.MethodGet, repoPath(o.name), nil,
				table{headers: []string{"NAME", "TAGS", "MANIFESTS", "CREATED", "LAST UPDATE"}, rows: listRows("name", "tagCount", "manifestCount", "createdTime", "lastUpdateTime")})
		},
	}
	o.bindCommon(cmd, true)
	return cmd
}

var imageTable = table{
	headers: []string{"NAME", "DIGEST", "SIZE", "PLATFORMS", "LAST UPDATE", "REFERRERS"},
	rows: func(v any) [][]string {
		list, _ := v.([]any)
		rows := [][]string{}
		for _, item := range list {
			name := cell(field(item, "name"))
			if tags, ok := field(item, "tags").([]any); ok {
				var ts []string
				for _, t := range tags {
					ts = append(ts, cell(t))
				}
				name = strings.Join(ts, ",")
			}
			var plats, refs []string
			if ps, ok := field(item, "platforms").([]any); ok {
				for _, p := range ps {
					plats = append(plats, cell(p))
				}
			}
			if gs, ok := field(item, "referrers").([]any); ok {
				for _, g := range gs {
					n := 0
					if ds, ok := field(g, "digests").([]any); ok {
						n = len(ds)
					}
					refs = append(refs, fmt.Sprintf("%s=%d", cell(field(g, "artifactType")), n))
				}
			}
			rows = append(rows, []string{name, cell(field(item, "digest")), cell(field(item, "size")), strings.Join(plats, ","),
				cell(field(item, "lastUpdateTime")), strings.Join(refs, " ")})
		}
		return rows
	},
}

func newRepositoryShowTags() *cobra.Command {
	o := &repositoryOptions{}
	cmd := &cobra.Command{
		Use:   "show-tags --name REPO [--detail] [--orderby time_desc] [--top N]",
		Short: "List a repository's tags (with --detail: the image each points at)",
		Example: `  outpost repository show-tags --name apps/web --orderby time_desc --top 5
  outpost repository show-tags --name apps/web --detail -o table`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := repoPath(o.name, "_tags") + o.listQuery()
			if o.detail {
				return call[[]catalog.Tag](cmd, &o.clientOptions, &o.outputOptions, http.MethodGet, path, nil, imageTable)
			}
			return call[[]string](cmd, &o.clientOptions, &o.outputOptions, http.MethodGet, path, nil, table{})
		},
	}
	o.bindCommon(cmd, true)
	o.bindList(cmd, true)
	return cmd
}

func newRepositoryShowManifests() *cobra.Command {
	o := &repositoryOptions{}
	cmd := &cobra.Command{
		Use:   "show-manifests --name REPO [--detail] [--orderby time_desc] [--top N]",
		Short: "List a repository's manifests: tagged, referrers and the platform manifests of indexes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call[[]catalog.Manifest](cmd, &o.clientOptions, &o.outputOptions, http.MethodGet, repoPath(o.name, "_manifests")+o.listQuery(), nil, imageTable)
		},
	}
	o.bindCommon(cmd, true)
	o.bindList(cmd, true)
	return cmd
}

// splitImage parses REPO:TAG or REPO@DIGEST.
func splitImage(image string) (repo, ref string, err error) {
	if i := strings.LastIndex(image, "@"); i > 0 {
		return image[:i], image[i+1:], nil
	}
	if i := strings.LastIndex(image, ":"); i > 0 && !strings.Contains(image[i:], "/") {
		return image[:i], image[i+1:], nil
	}
	return "", "", fmt.Errorf("--image %q: want REPOSITORY:TAG or REPOSITORY@DIGEST", image)
}

func newRepositoryDelete() *cobra.Command {
	o := &repositoryOptions{}
	cmd := &cobra.Command{
		Use:   "delete (--name REPO | --image REPO:TAG | --image REPO@DIGEST) --yes",
		Short: "Delete a repository's manifests, or one image with every tag on it",
		Long: `Delete every manifest of a repository (--name), or one manifest with all its
tags (--image, by tag or digest), and its referrers index entry. Blobs no
manifest references any more are reclaimed by garbage collection.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, what := repoPath(o.name), "repository "+o.name
			switch {
			case (o.name == "") == (o.image == ""):
				return fmt.Errorf("give one of --name or --image")
			case o.image != "":
				repo, ref, err := splitImage(o.image)
				if err != nil {
					return err
				}
				path, what = repoPath(repo, "_manifests", ref), "image "+o.image
			}
			if !o.yes {
				return fmt.Errorf("deleting %s needs --yes", what)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			return c.Do(cmd.Context(), http.MethodDelete, path, nil, nil)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	cmd.Flags().StringVarP(&o.name, "name", "n", "", "repository to delete")
	cmd.Flags().StringVarP(&o.image, "image", "t", "", "image to delete: REPO:TAG or REPO@DIGEST")
	cmd.Flags().BoolVarP(&o.yes, "yes", "y", false, "do not prompt for confirmation")
	return cmd
}

func newRepositoryUntag() *cobra.Command {
	o := &repositoryOptions{}
	cmd := &cobra.Command{
		Use:   "untag --image REPO:TAG",
		Short: "Remove a tag; the manifest stays",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			repo, tag, err := splitImage(o.image)
			if err != nil {
				return err
			}
			if strings.Contains(tag, ":") {
				return fmt.Errorf("--image %q: untag takes a tag, not a digest", o.image)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			return c.Do(cmd.Context(), http.MethodDelete, repoPath(repo, "_tags", tag), nil, nil)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	cmd.Flags().StringVarP(&o.image, "image", "t", "", "tag to remove: REPO:TAG")
	_ = cmd.MarkFlagRequired("image")
	return cmd
}
