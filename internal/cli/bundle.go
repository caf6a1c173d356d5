package cli

import (
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
)

func newBundleCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Carry images to sites that never see the network: signed, delta, resumable bundles",
		Long: `Air-gap bundles. A site with no network writes an inventory of the blobs it
holds (bundle inventory); the root exports the images the site needs minus
every blob the inventory lists, signed with the root's bundle key (bundle
export); the site imports the file, verifying the signature, its target,
its base and every digest, and publishes the tags once every image is
complete (bundle import). A full bundle is a plain OCI image layout in a
tar that skopeo, oras and crane read. bundle verify checks a file offline.
docs/bundles.md describes the format.

Each command talks to the registry named by --server (default: the last
outpost login), so it works from an operator's laptop as well as on the host.`,
	}
	cmd.AddCommand(newBundleInventoryCommand(), newBundleExportCommand(), newBundleImportCommand(), newBundleVerifyCommand())
	return cmd
}

// progress rewrites one line of w (a terminal) with bytes done of total,
// blobs and an ETA, every half second, until stop.
type progress struct {
	bytes, blobs atomic.Int64
	total        int64
	blobsTotal   int64
	what         string
}

func (p *progress) show(w io.Writer) (stop func()) {
	f, ok := w.(*os.File)
	if !ok {
		return func() {}
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return func() {}
	}
	start := time.Now()
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
				n := p.bytes.Load()
				eta := "--"
				if el := time.Since(start); n > 0 && p.total > n {
					eta = (time.Duration(float64(el) * float64(p.total-n) / float64(n))).Round(time.Second).String()
				}
				fmt.Fprintf(w, "\r\033[K%s: %s / %s, %d / %d blobs, ETA %s", p.what, humanBytes(float64(n)), humanBytes(float64(p.total)), p.blobs.Load(), p.blobsTotal, eta)
			}
		}
	}()
	return func() { close(done); <-ended }
}
