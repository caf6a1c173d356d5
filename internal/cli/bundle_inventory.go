package cli

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/outpost-registry/outpost/internal/atomicfile"
	"github.com/outpost-registry/outpost/internal/bundle"
)

type bundleInventoryOptions struct {
	clientOptions
	out string
}

func newBundleInventoryCommand() *cobra.Command {
	o := &bundleInventoryOptions{}
	cmd := &cobra.Command{
		Use:   "inventory -o FILE",
		Short: "Write the list of blobs this site holds, for the root to export a delta against",
		Long: `Write the site's inventory: the SHA-256 digest of every blob the registry
holds, sorted, 32 bytes each after a one-line header (the site's identity
and name), closed by a SHA-256 checksum of the file. It is exact, not a
probabilistic filter: 100,000 blobs take 3.2 MB. Carry it to the root and
give it to bundle export --since-inventory; the bundle made from it is bound
to this site and leaves out every blob listed.`,
		Example: `  outpost bundle inventory -o plant-a.inventory --server https://plant-a.local:5000`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.out == "" {
				return errors.New("give the file to write with -o FILE")
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			if err := c.Inventory(cmd.Context(), &buf); err != nil {
				return err
			}
			inv, d, err := bundle.ReadInventory(bytes.NewReader(buf.Bytes()))
			if err != nil {
				return fmt.Errorf("the server's inventory: %w", err)
			}
			if err := atomicfile.Write(o.out, buf.Bytes(), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d blobs (%s held), %d bytes, site %s, %s\n", o.out, inv.Count, humanBytes(float64(inv.Bytes)), buf.Len(), inv.SiteID, d)
			return nil
		},
	}
	o.clientOptions.bind(cmd.Flags())
	cmd.Flags().StringVarP(&o.out, "output-file", "o", "", "file to write the inventory to")
	return cmd
}
