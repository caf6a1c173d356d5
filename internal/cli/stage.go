package cli

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-registry/outpost/internal/client"
	"github.com/outpost-registry/outpost/internal/protocol"
)

type stageOptions struct {
	clientOptions
	outputOptions
	name          string
	targets       []string
	images        []string
	manifests     []string
	respectWindow bool
	prePull       bool
	nodeSelector  map[string]string
	nodes         bool
	watch         bool
	aliases       []string
	job           string
	username      string
	password      string
	jobServer     string
	jobCAFile     string
	jobUsername   string
	jobPassword   string
	yes           bool
}

func newStageCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stage",
		Short: "Pre-download the images of a release on connected registries, and check them",
	}
	cmd.AddCommand(newStageCreate(), newStageList(), newStageShow(), newStageDelete(), newStageCheck(),
		newStageWait(), newStageMarkInstalled())
	return cmd
}

func newStageCreate() *cobra.Command {
	o := &stageOptions{}
	cmd := &cobra.Command{
		Use:   "create --name NAME --connected-registry C [C2...] (--image REF... | --from-manifests PATH... [--registry-alias HOST...]) [--respect-window] [--pre-pull [--node-selector K=V...]]",
		Short: "Create a staging job: the sites fetch the images at once",
		Long: `Create a staging job on the root. Images are resolved to digests now, so the
job is immutable. The sites fetch the images with priority over scheduled
sync (inside their sync window with --respect-window), every platform and
referrer included.

--from-manifests reads Kubernetes YAML (Deployments, StatefulSets,
DaemonSets, Jobs, CronJobs, Pods, rendered Helm output) and takes every
image of the root's repositories: names with the root's address, with the
login server of any connected registry (as sites name them, e.g.
<clusterIP>:443/apps/web:1 or <clusterIP>/apps/web:1), or with a
--registry-alias host; and names without a registry host (apps/web:1,
nginx:1 meaning library/nginx:1) that the root has. Every other name is
skipped with a warning.

--pre-pull adds the node stage: once a site has staged the job, the node
agents there (outpost trust pre-pull, the chart's prePull.enabled) pull
every image by digest into their node's container runtime (containerd's
k8s.io namespace, through CRI), a limited number of nodes at a time.
--node-selector limits it to nodes with those labels (the agents learn
their node's labels with --node-labels-from-api, the chart's
prePull.nodeLabels, or --node-label). With
--respect-window the nodes also pull only inside the site's sync window.
Progress per node: outpost stage show --name NAME --nodes.`,
		Example: `  outpost stage create --name release-42 --connected-registry factory1 factory2 --image apps/web:4.2 apps/api@sha256:…
  helm template ./chart | tee release.yaml; outpost stage create --name release-42 --connected-registry factory1 --from-manifests release.yaml
  outpost stage create --name release-43 --connected-registry factory1 --from-manifests k8s/ --registry-alias registry.factory1.example`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			images := o.images
			if len(o.manifests) > 0 {
				m, err := rootMapper(cmd.Context(), c, o.aliases)
				if err != nil {
					return err
				}
				more, err := manifestImages(o.manifests, m, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				images = append(images, more...)
			}
			if len(images) == 0 {
				return errors.New("no image to stage: give --image or --from-manifests naming images of the root")
			}
			if len(o.nodeSelector) > 0 && !o.prePull {
				return errors.New("--node-selector needs --pre-pull")
			}
			req := protocol.StagingRequest{Name: o.name, Targets: o.targets, Images: images, RespectWindow: o.respectWindow,
				PrePull: o.prePull, NodeSelector: o.nodeSelector}
			var out protocol.StagingJob
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
	listFlag(cmd.Flags(), &o.aliases, listNames, "registry-alias", "other registry hosts (host or host:port) that name the root's repositories in --from-manifests")
	cmd.Flags().BoolVar(&o.respectWindow, "respect-window", false, "stage (and pre-pull) only inside the sites' sync windows")
	cmd.Flags().BoolVar(&o.prePull, "pre-pull", false, "also pull the images into every node's container runtime once a site has staged them")
	cmd.Flags().StringToStringVar(&o.nodeSelector, "node-selector", nil, "with --pre-pull, only nodes with this label (k=v, repeatable)")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("connected-registry")
	return cmd
}

// stageSitesTable shows a job's progress, one row per site.
var stageSitesTable = table{
	headers: []string{"SITE", "STATE", "IMAGES", "BYTES", "NODES", "UPDATED(UTC)", "REASON"},
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
				cell(field(s, "bytes")), nodesCell(field(s, "nodes")), cell(field(s, "lastUpdate")), cell(field(s, "reason"))})
		}
		return rows
	},
}

// nodesCell is a site's node stage: "done/total" nodes pulled, with the
// failing count; "-" for a job without pre-pull.
func nodesCell(n any) string {
	if n == nil {
		return "-"
	}
	out := cell(field(n, "done")) + "/" + cell(field(n, "total"))
	if f := cell(field(n, "failed")); f != "" && f != "0" {
		out += " (" + f + " failed)"
	}
	return out
}

// stageNodesTable lists every node of every site of a pre-pull job.
var stageNodesTable = table{
	headers: []string{"SITE", "NODE", "STATE", "IMAGES", "UPDATED(UTC)", "REASON"},
	rows: func(v any) [][]string {
		sites, _ := field(v, "sites").(map[string]any)
		rows := [][]string{}
		for _, n := range slices.Sorted(maps.Keys(sites)) {
			list, _ := field(field(sites[n], "nodes"), "list").([]any)
			for _, nd := range list {
				rows = append(rows, []string{n, cell(field(nd, "node")), cell(field(nd, "state")),
					cell(field(nd, "imagesDone")) + "/" + cell(field(nd, "imagesTotal")), cell(field(nd, "lastUpdate")), cell(field(nd, "reason"))})
			}
		}
		return rows
	},
}

// stageListTable shows every release: its state, and each site's state
// with the time it reached it (staged, installed, retired).
var stageListTable = table{
	headers: []string{"NAME", "STATE", "IMAGES", "CREATED(UTC)", "SITES"},
	rows: func(v any) [][]string {
		list, _ := v.([]any)
		rows := [][]string{}
		for _, j := range list {
			sites, _ := field(j, "sites").(map[string]any)
			var cells []string
			for _, n := range slices.Sorted(maps.Keys(sites)) {
				cells = append(cells, n+"="+siteLifecycle(sites[n]))
			}
			imgs, _ := field(j, "images").([]any)
			rows = append(rows, []string{cell(field(j, "name")), cell(field(j, "state")), fmt.Sprint(len(imgs)), cell(field(j, "creationDate")), strings.Join(cells, " ")})
		}
		return rows
	},
}

// siteLifecycle is a site's furthest lifecycle step and when it was
// reached: Retired@T, Installed@T, Staged@T, or the reported state.
func siteLifecycle(s any) string {
	for _, k := range []struct{ field, name string }{{"retiredTime", "Retired"}, {"installedTime", "Installed"}, {"stagedTime", "Staged"}} {
		if t := cell(field(s, k.field)); t != "" {
			return k.name + "@" + t
		}
	}
	return cell(field(s, "state"))
}

func newStageList() *cobra.Command {
	o := &stageOptions{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List every release (staging job) with its state and each site's times",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return call[[]protocol.StagingJob](cmd, &o.clientOptions, &o.outputOptions, http.MethodGet, "/api/v1/staging", nil, stageListTable)
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
		Use:   "show --name NAME [--watch] [--nodes]",
		Short: "Show a staging job's progress per site (and per node with --nodes)",
		Long: `Show a staging job's progress, one row per site. For a --pre-pull job the
NODES column counts the nodes that report every image pulled into their
container runtime, of the nodes that reported; --nodes lists the nodes
instead (state Pending, Pulling, Pulled or Failed with the reason), failing
ones first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			for i := 0; ; i++ {
				var job protocol.StagingJob
				if err := c.Do(cmd.Context(), http.MethodGet, "/api/v1/staging/"+url.PathEscape(o.name), nil, &job); err != nil {
					return err
				}
				tbl := stageSitesTable
				if o.nodes {
					tbl = stageNodesTable
				}
				if !o.watch {
					return o.render(cmd.OutOrStdout(), job, tbl)
				}
				done, all := 0, true
				total := 0
				for _, s := range job.Sites {
					done += s.ImagesDone
					total += s.ImagesTotal
					all = all && (s.State == protocol.StageStaged || s.State == protocol.StageFailed)
				}
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "\n%s %s %d/%d images\n", time.Now().UTC().Format(time.TimeOnly), progressBar(done, total), done, total)
				if err := o.render(w, job, tbl); err != nil {
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
	cmd.Flags().BoolVar(&o.nodes, "nodes", false, "list the nodes of a --pre-pull job with their state")
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
	cmd := &cobra.Command{
		Use:   "check (--image REF... | --from-manifests PATH... | --job NAME) [--server SITE -u USER -p PASSWORD --ca-file SITE-CA] [--job-server ROOT ...]",
		Short: "Verify that every manifest, blob and referrer of images is present and intact at a site",
		Long: `Check images at a registry (a site): every manifest, child manifest, blob and
referrer must be present, and every blob's content must match its digest
(each blob is read, not trusted from metadata). Prints one line per image
and exits non-zero when anything is missing or corrupt.

The site is --server, with -u/-p (a client token of the site) and
--ca-file. --job reads the job's images from the root, which has its own
flags: --job-server (default: $OUTPOST_SERVER, else the last outpost
login), --job-username/--job-password (default: OUTPOST_USERNAME and
OUTPOST_PASSWORD, else the saved login of the root) and --job-ca-file
(default: the CA saved with that login). After outpost login to the root,
--job needs no root flags. --from-manifests maps names as stage create does
when a root is known (else only the site's address and --registry-alias
hosts count, and names without a registry host are skipped).`,
		Example: `  outpost login https://registry.example.com:5000 -u admin -p "$ADMIN_PASSWORD" --ca-file root-ca.crt
  outpost stage check --job release-42 --server https://factory1:5000 -u site-puller -p "$PULLER_PASSWORD" --ca-file factory1-ca.crt
  outpost stage check --job release-42 --job-server https://registry.example.com:5000 --job-ca-file root-ca.crt --job-username admin --job-password "$ADMIN_PASSWORD" \
      --server https://factory1:5000 -u site-puller -p "$PULLER_PASSWORD" --ca-file factory1-ca.crt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			images, site, err := o.checkImages(cmd)
			if err != nil {
				return err
			}
			if len(images) == 0 {
				return errors.New("nothing to check: give --image, --from-manifests or --job")
			}
			var results []client.CheckResult
			bad := 0
			for _, img := range images {
				repo, ref, err := protocol.ParseImageRef(img)
				if err != nil {
					return err
				}
				r := site.CheckImage(cmd.Context(), repo, ref)
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
				return fmt.Errorf("%d of %d images are missing content or corrupt at %s", bad, len(images), site.Server())
			}
			return nil
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	f := cmd.Flags()
	_ = f.Set("output", "text")
	f.Lookup("output").DefValue = "text"
	f.Lookup("output").Usage = "output format: text, json, yaml, table or tsv"
	f.Lookup("server").Usage = "the site to check, URL or host:port (default: $OUTPOST_SERVER, else the last outpost login)"
	f.Lookup("ca-file").Usage = "CA certificate to trust for the site (default: the CA saved with its login)"
	listFlag(f, &o.images, listNames, "image", "images, repository:tag or repository@digest")
	listFlag(f, &o.manifests, listPaths, "from-manifests", "Kubernetes YAML files or directories naming the images")
	listFlag(f, &o.aliases, listNames, "registry-alias", "other registry hosts (host or host:port) that name the root's repositories in --from-manifests")
	f.StringVar(&o.job, "job", "", "check the images of this staging job, read from the root (--job-server)")
	f.StringVarP(&o.username, "username", "u", "", "user at the site, e.g. a client token (default: OUTPOST_USERNAME, else the saved login of --server)")
	f.StringVarP(&o.password, "password", "p", "", "password of --username at the site")
	f.StringVar(&o.jobServer, "job-server", "", "the root holding --job (default: $OUTPOST_SERVER, else the last outpost login; else --server)")
	f.StringVar(&o.jobCAFile, "job-ca-file", "", "CA certificate to trust for --job-server (default: the CA saved with its login)")
	f.StringVar(&o.jobUsername, "job-username", "", "admin of the root (default: OUTPOST_USERNAME, else the saved login of --job-server)")
	f.StringVar(&o.jobPassword, "job-password", "", "password of --job-username")
	return cmd
}

// checkImages returns the site's client and the images to check there:
// --image, --from-manifests and the images of --job.
func (o *stageOptions) checkImages(cmd *cobra.Command) ([]string, *client.Client, error) {
	if (o.username != "") != (o.password != "") {
		return nil, nil, errors.New("give --username and --password together (the site's credential)")
	}
	if (o.jobUsername != "") != (o.jobPassword != "") {
		return nil, nil, errors.New("give --job-username and --job-password together (the root's credential)")
	}
	site, err := newClient(o.server, o.caFile, o.username, o.password)
	if err != nil {
		return nil, nil, err
	}
	root, err := o.rootClient(site)
	if err != nil {
		return nil, nil, err
	}
	images := o.images
	if len(o.manifests) > 0 {
		m := newImageMapper(append([]string{serverHost(site)}, o.aliases...))
		m.bareNote = "a name without a registry host: give --job-server (or log in to the root) to map it"
		if root != site {
			if m, err = rootMapper(cmd.Context(), root, append([]string{serverHost(site)}, o.aliases...)); err != nil {
				return nil, nil, err
			}
		}
		more, err := manifestImages(o.manifests, m, cmd.ErrOrStderr())
		if err != nil {
			return nil, nil, err
		}
		images = append(images, more...)
	}
	if o.job == "" {
		return images, site, nil
	}
	var job protocol.StagingJob
	if err := root.Do(cmd.Context(), http.MethodGet, "/api/v1/staging/"+url.PathEscape(o.job), nil, &job); err != nil {
		return nil, nil, fmt.Errorf("read staging job %s from %s: %w (jobs are read from the root as its admin: run outpost login to the root, or give --job-server, --job-username, --job-password and --job-ca-file)", o.job, root.Server(), err)
	}
	for _, im := range job.Images {
		ref := im.Reference
		if im.Digest != "" {
			ref = im.Repository + "@" + string(im.Digest)
		}
		images = append(images, ref)
	}
	return images, site, nil
}

// rootClient returns the client of the root: --job-server, else the
// default server of client commands; site itself when that is the site
// and no root credential or CA was given.
func (o *stageOptions) rootClient(site *client.Client) (*client.Client, error) {
	server := o.jobServer
	if server == "" {
		var err error
		if server, err = defaultServer(); err != nil {
			return nil, err
		}
	}
	if server == "" {
		server = site.Server()
	}
	server, err := client.NormalizeServer(server)
	if err != nil {
		return nil, fmt.Errorf("--job-server: %w", err)
	}
	if server == site.Server() && o.jobUsername == "" && o.jobCAFile == "" {
		return site, nil
	}
	return newClient(server, o.jobCAFile, o.jobUsername, o.jobPassword)
}
