package cli

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/spf13/cobra"

	"github.com/outpost-registry/outpost/internal/client"
	"github.com/outpost-registry/outpost/internal/controlplane"
	"github.com/outpost-registry/outpost/internal/kube"
)

type stageOptions struct {
	clientOptions
	outputOptions
	name          string
	targets       []string
	images        []string
	manifests     []string
	respectWindow bool
	watch         bool
	job           string
	username      string
	password      string
	yes           bool
}

func newStageCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stage",
		Short: "Pre-download the images of a release on connected registries, and check them",
	}
	cmd.AddCommand(newStageCreate(), newStageList(), newStageShow(), newStageDelete(), newStageCheck())
	return cmd
}

// manifestImages reads Kubernetes YAML files or directories and returns
// the images hosted by server (host:port), without the host.
func manifestImages(paths []string, server string, warn io.Writer) ([]string, error) {
	var files []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("--from-manifests: %w", err)
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
				files = append(files, path)
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("--from-manifests: %w", err)
		}
	}
	var out []string
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, fmt.Errorf("--from-manifests: %w", err)
		}
		imgs, err := kube.Images(fh)
		_ = fh.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, img := range imgs {
			ref, ok := hostedImage(img, server)
			if !ok {
				fmt.Fprintf(warn, "skipping %s (in %s): not hosted by %s\n", img, f, server)
				continue
			}
			if !slices.Contains(out, ref) {
				out = append(out, ref)
			}
		}
	}
	return out, nil
}

// hostedImage turns "host:port/repo:tag" into "repo:tag" when host:port is
// server.
func hostedImage(img, server string) (string, bool) {
	named, err := reference.ParseNormalizedNamed(img)
	if err != nil || reference.Domain(named) != server {
		return "", false
	}
	path := reference.Path(named)
	if d, ok := named.(reference.Digested); ok {
		return path + "@" + d.Digest().String(), true
	}
	if t, ok := named.(reference.Tagged); ok {
		return path + ":" + t.Tag(), true
	}
	return path + ":latest", true
}

func serverHost(c *client.Client) string {
	u, err := url.Parse(c.Server())
	if err != nil {
		return ""
	}
	return u.Host
}

func newStageCreate() *cobra.Command {
	o := &stageOptions{}
	cmd := &cobra.Command{
		Use:   "create --name NAME --connected-registry C [C2...] (--image REF... | --from-manifests PATH...) [--respect-window]",
		Short: "Create a staging job: the sites fetch the images at once",
		Long: `Create a staging job on the root. Images are resolved to digests now, so the
job is immutable. --from-manifests reads Kubernetes YAML (Deployments,
StatefulSets, DaemonSets, Jobs, CronJobs, Pods, rendered Helm output) and
takes every image this registry hosts. The sites fetch the images with
priority over scheduled sync (inside their sync window with
--respect-window), every platform and referrer included.`,
		Example: `  outpost stage create --name release-42 --connected-registry factory1 factory2 --image apps/web:4.2 apps/api@sha256:…
  helm template ./chart | tee release.yaml; outpost stage create --name release-42 --connected-registry factory1 --from-manifests release.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			images := o.images
			if len(o.manifests) > 0 {
				more, err := manifestImages(o.manifests, serverHost(c), cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				images = append(images, more...)
			}
			if len(images) == 0 {
				return errors.New("no image to stage: give --image or --from-manifests naming images of this registry")
			}
			req := controlplane.StagingRequest{Name: o.name, Targets: o.targets, Images: images, RespectWindow: o.respectWindow}
			var out controlplane.StagingJob
			if err := c.Do(cmd.Context(), http.MethodPost, "/api/v1/staging", req, &out); err != nil {
				return err
			}
			return o.render(cmd.OutOrStdout(), out, stageSitesTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	cmd.Flags().StringVarP(&o.name, "name", "n", "", "job name (5-50 letters, digits and -)")
	listFlag(cmd.Flags(), &o.targets, listNames, "connected-registry", "connected registries to stage on")
	listFlag(cmd.Flags(), &o.images, listNames, "image", "images, repository:tag or repository@digest")
	listFlag(cmd.Flags(), &o.manifests, listPaths, "from-manifests", "Kubernetes YAML files or directories naming the images")
	cmd.Flags().BoolVar(&o.respectWindow, "respect-window", false, "stage only inside the sites' sync windows")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("connected-registry")
	return cmd
}

// stageSitesTable shows a job's progress, one row per site.
var stageSitesTable = table{
	headers: []string{"SITE", "STATE", "IMAGES", "BYTES", "UPDATED(UTC)", "REASON"},
	rows: func(v any) [][]string {
		sites, _ := field(v, "sites").(map[string]any)
		names := make([]string, 0, len(sites))
		for n := range sites {
			names = append(names, n)
		}
		sort.Strings(names)
		rows := [][]string{}
		for _, n := range names {
			s := sites[n]
			rows = append(rows, []string{n, cell(field(s, "state")), cell(field(s, "imagesDone")) + "/" + cell(field(s, "imagesTotal")),
				cell(field(s, "bytes")), cell(field(s, "lastUpdate")), cell(field(s, "reason"))})
		}
		return rows
	},
}

var stageListTable = table{
	headers: []string{"NAME", "SITES", "IMAGES", "STAGED", "FAILED", "CREATED(UTC)"},
	rows: func(v any) [][]string {
		list, _ := v.([]any)
		rows := [][]string{}
		for _, j := range list {
			sites, _ := field(j, "sites").(map[string]any)
			staged, failed := 0, 0
			for _, s := range sites {
				switch cell(field(s, "state")) {
				case controlplane.StageStaged:
					staged++
				case controlplane.StageFailed:
					failed++
				}
			}
			imgs, _ := field(j, "images").([]any)
			rows = append(rows, []string{cell(field(j, "name")), fmt.Sprint(len(sites)), fmt.Sprint(len(imgs)), fmt.Sprint(staged), fmt.Sprint(failed), cell(field(j, "creationDate"))})
		}
		return rows
	},
}

func newStageList() *cobra.Command {
	o := &stageOptions{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List staging jobs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call[[]controlplane.StagingJob](cmd, &o.clientOptions, &o.outputOptions, http.MethodGet, "/api/v1/staging", nil, stageListTable)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	return cmd
}

// progressBar draws done/total as a 30-character bar.
func progressBar(done, total int) string {
	if total <= 0 {
		return "[" + strings.Repeat(" ", 30) + "]"
	}
	n := done * 30 / total
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", 30-n) + "]"
}

func newStageShow() *cobra.Command {
	o := &stageOptions{}
	cmd := &cobra.Command{
		Use:   "show --name NAME [--watch]",
		Short: "Show a staging job's progress per site",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			for i := 0; ; i++ {
				var job controlplane.StagingJob
				if err := c.Do(cmd.Context(), http.MethodGet, "/api/v1/staging/"+url.PathEscape(o.name), nil, &job); err != nil {
					return err
				}
				if !o.watch {
					return o.render(cmd.OutOrStdout(), job, stageSitesTable)
				}
				done, all := 0, true
				total := 0
				for _, s := range job.Sites {
					done += s.ImagesDone
					total += s.ImagesTotal
					all = all && (s.State == controlplane.StageStaged || s.State == controlplane.StageFailed)
				}
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "\n%s %s %d/%d images\n", time.Now().UTC().Format(time.TimeOnly), progressBar(done, total), done, total)
				if err := o.render(w, job, stageSitesTable); err != nil {
					return err
				}
				if all || i > 100000 {
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(2 * time.Second):
				}
			}
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	cmd.Flags().StringVarP(&o.name, "name", "n", "", "job name")
	cmd.Flags().BoolVar(&o.watch, "watch", false, "refresh every 2 s until every site is Staged or Failed")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newStageDelete() *cobra.Command {
	o := &stageOptions{}
	cmd := &cobra.Command{
		Use:   "delete --name NAME --yes",
		Short: "Delete a staging job (its content is no longer protected)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !o.yes {
				return fmt.Errorf("deleting staging job %q needs --yes", o.name)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			return c.Do(cmd.Context(), http.MethodDelete, "/api/v1/staging/"+url.PathEscape(o.name), nil, nil)
		},
	}
	o.clientOptions.bind(cmd.Flags())
	cmd.Flags().StringVarP(&o.name, "name", "n", "", "job name")
	cmd.Flags().BoolVarP(&o.yes, "yes", "y", false, "do not prompt for confirmation")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newStageCheck() *cobra.Command {
	o := &stageOptions{}
	var jobServer string
	cmd := &cobra.Command{
		Use:   "check (--image REF... | --from-manifests PATH... | --job NAME) [--server URL] [-u USER -p PASSWORD]",
		Short: "Verify that every manifest, blob and referrer of images is present and intact at a site",
		Long: `Check images at a registry (a site): every manifest, child manifest, blob and
referrer must be present, and every blob's content must match its digest
(each blob is read, not trusted from metadata). Prints one line per image
and exits non-zero when anything is missing or corrupt. --job takes the
images of a staging job from the root (--job-server, default --server).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			if o.username != "" {
				if c, err = client.New(c.Server(), o.username, o.password, o.caFile); err != nil {
					return err
				}
			}
			images := o.images
			if len(o.manifests) > 0 {
				more, err := manifestImages(o.manifests, serverHost(c), cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				images = append(images, more...)
			}
			if o.job != "" {
				jc := c
				if jobServer != "" {
					if jc, err = (&clientOptions{server: jobServer, caFile: o.caFile}).client(); err != nil {
						return err
					}
				}
				var job controlplane.StagingJob
				if err := jc.Do(cmd.Context(), http.MethodGet, "/api/v1/staging/"+url.PathEscape(o.job), nil, &job); err != nil {
					return fmt.Errorf("read job %s: %w", o.job, err)
				}
				for _, im := range job.Images {
					ref := im.Reference
					if im.Digest != "" {
						ref = im.Repository + "@" + string(im.Digest)
					}
					images = append(images, ref)
				}
			}
			if len(images) == 0 {
				return errors.New("nothing to check: give --image, --from-manifests or --job")
			}
			var results []client.CheckResult
			bad := 0
			for _, img := range images {
				repo, ref, err := controlplane.ParseImageRef(img)
				if err != nil {
					return err
				}
				r := c.CheckImage(cmd.Context(), repo, ref)
				results = append(results, r)
				if !r.OK {
					bad++
				}
			}
			if o.format == "text" || o.format == "" {
				for _, r := range results {
					if r.OK {
						fmt.Fprintf(cmd.OutOrStdout(), "ok       %s (%d manifests, %d blobs, %d bytes verified)\n", r.Image, r.Manifests, r.Blobs, r.Bytes)
						continue
					}
					for _, p := range r.Problems {
						fmt.Fprintf(cmd.OutOrStdout(), "PROBLEM  %s: %s\n", r.Image, p)
					}
				}
			} else if err := o.render(cmd.OutOrStdout(), results, table{}); err != nil {
				return err
			}
			if bad > 0 {
				return fmt.Errorf("%d of %d images are missing content or corrupt", bad, len(images))
			}
			return nil
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	_ = cmd.Flags().Set("output", "text")
	cmd.Flags().Lookup("output").DefValue = "text"
	cmd.Flags().Lookup("output").Usage = "output format: text, json, yaml, table or tsv"
	listFlag(cmd.Flags(), &o.images, listNames, "image", "images, repository:tag or repository@digest")
	listFlag(cmd.Flags(), &o.manifests, listPaths, "from-manifests", "Kubernetes YAML files or directories naming the images")
	cmd.Flags().StringVar(&o.job, "job", "", "check the images of this staging job")
	cmd.Flags().StringVar(&jobServer, "job-server", "", "root server holding --job (default: --server)")
	cmd.Flags().StringVarP(&o.username, "username", "u", "", "user at the site (default: saved login or OUTPOST_USERNAME)")
	cmd.Flags().StringVarP(&o.password, "password", "p", "", "password at the site")
	return cmd
}
