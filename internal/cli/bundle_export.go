package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-registry/outpost/internal/bundle"
	"github.com/outpost-registry/outpost/internal/client"
)

type bundleExportOptions struct {
	clientOptions
	site      string
	repos     []string
	images    []string
	inventory string
	full      bool
	out       string
	format    string
}

// ExportSummary is what bundle export -o json reports.
type ExportSummary struct {
	File         string        `json:"file"`
	ID           string        `json:"id"`
	Target       bundle.Target `json:"target"`
	Base         *bundle.Base  `json:"base,omitempty"`
	Images       []string      `json:"images"`
	Blobs        int           `json:"blobs"`
	Bytes        int64         `json:"blobBytes"`
	Omitted      int           `json:"omitted"`
	OmittedBytes int64         `json:"omittedBytes"`
	FileBytes    int64         `json:"fileBytes"`
	Seconds      float64       `json:"seconds"`
}

func newBundleExportCommand() *cobra.Command {
	o := &bundleExportOptions{}
	cmd := &cobra.Command{
		Use:   "export (--connected-registry NAME | --image REPO:TAG... | --repository REPO...) [--since-inventory FILE | --full] -o FILE",
		Short: "Have the root write a signed bundle of the images a site needs, minus what it holds",
		Long: `Export a bundle at the root. The server walks the graph of every image
(index, manifests, config, layers, referrers), leaves out every blob the
site's inventory (--since-inventory) lists, signs the contents manifest
with its bundle key (data directory, pki/bundle.key) and streams the tar,
which this command writes to FILE (-o FILE, or --file FILE with -o json
for a JSON summary).

What goes in: --image and --repository name it; with --connected-registry
alone, every tag of the repositories the connected registry is configured
to have. The bundle is bound to the site: to the inventory's site identity,
or to the connected registry's name. Without --since-inventory, the root
leaves out what it knows the site holds (the bundles it reported
importing); --full leaves nothing out (a bundle standard tools read:
skopeo copy oci-archive:FILE …).

Progress (bytes, blobs, ETA) is shown on a terminal; -o json prints a
summary (then name the file with --file).`,
		Example: `  outpost bundle export --connected-registry plant-a --since-inventory plant-a.inventory -o release-42.bundle
  outpost bundle export --image apps/web:4.2 --full --file web-4.2.bundle -o json`,
		Args: cobra.NoArgs,
		RunE: o.run,
	}
	o.clientOptions.bind(cmd.Flags())
	f := cmd.Flags()
	f.StringVar(&o.site, "connected-registry", "", "the site the bundle is for")
	f.StringArrayVar(&o.repos, "repository", nil, "export every tag of this repository (repeatable)")
	f.StringArrayVar(&o.images, "image", nil, "export this image, repository:tag or repository@digest (repeatable)")
	f.StringVar(&o.inventory, "since-inventory", "", "the site's inventory (outpost bundle inventory): leave out every blob it lists")
	f.BoolVar(&o.full, "full", false, "leave nothing out, whatever the site holds")
	f.StringVarP(&o.out, "file", "f", "", "file to write the bundle to")
	f.StringVarP(&o.format, "out", "o", "table", "the bundle file to write (as --file), or the summary format: table or json")
	return cmd
}

func (o *bundleExportOptions) run(cmd *cobra.Command, _ []string) error {
	switch o.format {
	case "json", "table":
	default: // -o FILE
		if o.out != "" && o.out != o.format {
			return fmt.Errorf("-o %s and --file %s: give the bundle file once", o.format, o.out)
		}
		o.out, o.format = o.format, "table"
	}
	if o.out == "" {
		return errors.New("give the bundle file to write with -o FILE (or --file FILE)")
	}
	if o.site == "" && len(o.images) == 0 && len(o.repos) == 0 {
		return errors.New("nothing to export: give --connected-registry, --image or --repository")
	}
	if o.full && o.inventory != "" {
		return errors.New("--full and --since-inventory exclude each other")
	}
	opts := client.ExportOptions{ConnectedRegistry: o.site, Repositories: o.repos, Images: o.images, Full: o.full}
	if o.inventory != "" {
		b, err := os.ReadFile(o.inventory)
		if err != nil {
			return fmt.Errorf("--since-inventory: %w", err)
		}
		opts.Inventory = b
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	start := time.Now()
	resp, err := c.ExportBundle(cmd.Context(), opts)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	tmp := o.out + ".partial"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("create bundle file: %w", err)
	}
	p := &progress{what: "export", total: resp.ContentLength}
	p.blobsTotal, _ = strconv.ParseInt(resp.Header.Get(bundle.HeaderBlobs), 10, 64)
	stop := p.show(cmd.ErrOrStderr())
	n, err := io.Copy(f, io.TeeReader(resp.Body, countWriter{&p.bytes}))
	stop()
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("the server's answer ended at %d of %d bytes", n, resp.ContentLength)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("export bundle: %w", err)
	}
	r, err := bundle.Open(tmp)
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	contents, err := bundle.Decode(r.Contents)
	_ = r.Close()
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, o.out); err != nil {
		return fmt.Errorf("export bundle: %w", err)
	}
	sum := ExportSummary{File: o.out, ID: contents.ID, Target: contents.Target, Base: contents.Base, Blobs: len(contents.Blobs), Bytes: contents.Bytes(),
		Omitted: len(contents.Omitted), OmittedBytes: contents.OmittedBytes(), FileBytes: n, Seconds: time.Since(start).Seconds()}
	for _, im := range contents.Images {
		sum.Images = append(sum.Images, im.Ref()+"@"+string(im.Digest))
	}
	if o.format == "json" {
		return (&outputOptions{format: "json"}).render(cmd.OutOrStdout(), sum, table{})
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s: bundle %s, %d images, %d blobs (%s), %d left out (%s), %s in %.1fs\n",
		o.out, sum.ID, len(sum.Images), sum.Blobs, humanBytes(float64(sum.Bytes)), sum.Omitted, humanBytes(float64(sum.OmittedBytes)), humanBytes(float64(n)), sum.Seconds)
	return nil
}

// countWriter adds the bytes written to n.
type countWriter struct{ n interface{ Add(int64) int64 } }

func (w countWriter) Write(b []byte) (int, error) { w.n.Add(int64(len(b))); return len(b), nil }
