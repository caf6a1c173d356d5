package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/outpost-registry/outpost/internal/bundle"
)

type bundleVerifyOptions struct {
	key    string
	format string
}

// VerifySummary is what bundle verify -o json reports.
type VerifySummary struct {
	File      string         `json:"file"`
	ID        string         `json:"id"`
	Issuer    string         `json:"issuer,omitempty"`
	KeyID     string         `json:"keyId"`
	Signature string         `json:"signature"`
	Target    bundle.Target  `json:"target"`
	Base      *bundle.Base   `json:"base,omitempty"`
	Images    []bundle.Image `json:"images"`
	Blobs     int            `json:"blobs"`
	Bytes     int64          `json:"blobBytes"`
	Omitted   int            `json:"omitted"`
}

func newBundleVerifyCommand() *cobra.Command {
	o := &bundleVerifyOptions{}
	cmd := &cobra.Command{
		Use:   "verify FILE [--bundle-key ROOT.pub]",
		Short: "Check a bundle file offline: its signature and every blob's digest",
		Long: `Check a bundle without any registry, before the disk leaves or when it
arrives: every blob the contents list is read from the file and verified
against its size and digest, and with --bundle-key the signature is
checked too (without it the report says the signature was not checked).
It prints what the bundle holds: images, target site, base, blobs.`,
		Example: `  outpost bundle verify release-42.bundle --bundle-key root-bundle.pub`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := bundle.Open(args[0])
			if err != nil {
				return err
			}
			defer r.Close()
			sum := VerifySummary{File: args[0], Signature: "not checked (no --bundle-key)"}
			var c *bundle.Contents
			if o.key != "" {
				_, pub, err := readBundleKey(o.key)
				if err != nil {
					return err
				}
				if c, err = bundle.Verify(r.Contents, r.Signature, pub); err != nil {
					return fmt.Errorf("bundle %s: %w", args[0], err)
				}
				sum.Signature = "valid"
			} else if c, err = bundle.Decode(r.Contents); err != nil {
				return fmt.Errorf("bundle %s: %w", args[0], err)
			}
			p := &progress{what: "verify", total: c.Bytes(), blobsTotal: int64(len(c.Blobs))}
			stop := p.show(cmd.ErrOrStderr())
			err = r.Check(cmd.Context(), c, func(n int64) { p.bytes.Add(n) })
			stop()
			if err != nil {
				return fmt.Errorf("bundle %s is damaged: %w", args[0], err)
			}
			sum.ID, sum.Issuer, sum.KeyID, sum.Target, sum.Base, sum.Images = c.ID, c.Issuer, c.KeyID, c.Target, c.Base, c.Images
			sum.Blobs, sum.Bytes, sum.Omitted = len(c.Blobs), c.Bytes(), len(c.Omitted)
			if o.format == "json" {
				return (&outputOptions{format: "json"}).render(cmd.OutOrStdout(), sum, table{})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: bundle %s from %s, signature %s; %d images, %d blobs (%s) verified, %d left out; target %s\n",
				args[0], sum.ID, sum.Issuer, sum.Signature, len(sum.Images), sum.Blobs, humanBytes(float64(sum.Bytes)), sum.Omitted, targetText(sum.Target))
			return nil
		},
	}
	cmd.Flags().StringVar(&o.key, "bundle-key", "", "the root's bundle public key (PEM): check the signature too")
	cmd.Flags().StringVarP(&o.format, "output", "o", "table", "report format: table or json")
	return cmd
}

func targetText(t bundle.Target) string {
	switch {
	case t.Name != "" && t.SiteID != "":
		return t.Name + " (" + t.SiteID + ")"
	case t.Name != "":
		return t.Name
	case t.SiteID != "":
		return t.SiteID
	}
	return "any site"
}
