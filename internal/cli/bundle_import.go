package cli

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/outpost-registry/outpost/internal/bundle"
	"github.com/outpost-registry/outpost/internal/client"
	"github.com/outpost-registry/outpost/internal/graph"
)

type bundleImportOptions struct {
	clientOptions
	key         string
	format      string
	concurrency int
}

// ImportSummary is what bundle import -o json reports.
type ImportSummary struct {
	bundle.Report
	Images       int   `json:"images"`
	Present      int   `json:"alreadyPresent"`
	BytesSent    int64 `json:"bytesSent"`
	ManifestsNew int64 `json:"manifestsWritten"`
}

func newBundleImportCommand() *cobra.Command {
	o := &bundleImportOptions{}
	cmd := &cobra.Command{
		Use:   "import FILE [--bundle-key ROOT.pub]",
		Short: "Import a bundle at a site: verified, published only once complete, resumable",
		Long: `Import a bundle into the registry named by --server. Before anything is
written, the server checks the contents manifest's signature with the
bundle key it received from its parent at activation (or, on a registry
with no parent, the root's public key given with --bundle-key: GET
/api/v1/pki/bundle.pub at the root), that the bundle is for this site, and
that it holds every blob a delta leaves out (the refusal names what is
missing). Then every manifest and blob the site lacks is sent and verified
while it streams; content the contents do not list is refused. The tags
are published only once every image's graph is present: a bundle that
fails anywhere publishes nothing.

Run the same command again after an interruption (a killed process, a
pulled disk): what was verified is kept and not written again. Importing a
bundle twice changes nothing.`,
		Example: `  outpost bundle import release-42.bundle --server https://plant-a.local:5000
  outpost bundle import release-42.bundle --bundle-key root-bundle.pub -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd, args[0]) },
	}
	o.clientOptions.bind(cmd.Flags())
	cmd.Flags().StringVar(&o.key, "bundle-key", "", "the root's bundle public key (PEM), for a site that did not receive one from a parent")
	cmd.Flags().StringVarP(&o.format, "output", "o", "table", "report format: table or json")
	cmd.Flags().IntVar(&o.concurrency, "concurrency", 4, "blobs sent at once")
	return cmd
}

func (o *bundleImportOptions) run(cmd *cobra.Command, file string) error {
	r, err := bundle.Open(file)
	if err != nil {
		return err
	}
	defer r.Close()
	req := bundle.OpenRequest{Contents: r.Contents, Signature: r.Signature}
	var contents *bundle.Contents
	if o.key != "" {
		b, pub, err := readBundleKey(o.key)
		if err != nil {
			return err
		}
		// Checked here too, so that a bad bundle fails before any upload.
		if contents, err = bundle.Verify(r.Contents, r.Signature, pub); err != nil {
			return fmt.Errorf("bundle %s refused: %w", file, err)
		}
		req.BundleKey = string(b)
	} else if contents, err = bundle.Decode(r.Contents); err != nil {
		return fmt.Errorf("bundle %s: %w", file, err)
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	sum, err := c.OpenImport(ctx, req)
	if err != nil {
		return fmt.Errorf("bundle %s refused: %w", file, err)
	}
	if err := r.IndexReferrers(ctx, contents); err != nil {
		return err
	}
	p := &progress{what: "import", total: sum.ToWrite, blobsTotal: int64(sum.Blobs - sum.Present)}
	stop := p.show(cmd.ErrOrStderr())
	target := &client.ImportTarget{C: c, ID: sum.ID}
	var manifests int64
	start := time.Now()
	for _, im := range contents.Images {
		st, err := graph.Copy(ctx, r, im.Repository, target, im.Repository, v1.Descriptor{Digest: im.Digest}, graph.Options{
			Concurrency: o.concurrency,
			OnBytes:     func(n int64) { p.bytes.Add(n) },
			OnBlob:      func(v1.Descriptor) { p.blobs.Add(1) },
		})
		manifests += st.Manifests
		if err != nil {
			stop()
			return fmt.Errorf("import %s: image %s: %w; nothing was published (what was verified is kept: run the import again to go on)", file, im.Ref(), explain(err))
		}
	}
	rep, err := c.CommitImport(ctx, sum.ID)
	stop()
	if err != nil {
		return fmt.Errorf("import %s: %w", file, err)
	}
	rep.Seconds = time.Since(start).Seconds()
	out := ImportSummary{Report: rep, Images: len(contents.Images), Present: sum.Present, BytesSent: p.bytes.Load(), ManifestsNew: manifests}
	if o.format == "json" {
		return (&outputOptions{format: "json"}).render(cmd.OutOrStdout(), out, table{})
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "bundle %s: %d images, %d published, %d unchanged; %d blobs (%s) written, %d already present, %.1fs\n",
		rep.ID, out.Images, len(rep.Published), len(rep.Unchanged), rep.BlobsWritten, humanBytes(float64(rep.BytesWritten)), sum.Present, rep.Seconds)
	for _, ref := range rep.Published {
		fmt.Fprintf(w, "  published %s\n", ref)
	}
	return nil
}

// explain words a copy failure for the operator.
func explain(err error) error {
	var ae *client.APIError
	if errors.As(err, &ae) {
		return errors.New(ae.Message)
	}
	if errors.Is(err, graph.ErrDigest) {
		return fmt.Errorf("%w (the bundle is damaged or was tampered with)", err)
	}
	return err
}

// readBundleKey reads the root's bundle public key given with --bundle-key.
func readBundleKey(path string) ([]byte, ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("--bundle-key: %w", err)
	}
	pub, err := bundle.ParsePublicKey(b)
	if err != nil {
		return nil, nil, fmt.Errorf("--bundle-key %s: %w", path, err)
	}
	return b, pub, nil
}
