package cli

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-registry/outpost/internal/importer"
)

type importOptions struct {
	clientOptions
	outputOptions
	source       string
	image        string
	username     string
	passwordFile string
	sourceCA     string
	allPlatforms bool
	interval     time.Duration
}

func newImportCommand() *cobra.Command {
	o := &importOptions{}
	cmd := &cobra.Command{
		Use:   "import --source REF --image NAME[:TAG] [--username U --password-file F] [--source-ca-file F]",
		Short: "Have the server copy an image from another registry into itself",
		Long: `Import an image, as az acr import does: the server (not this client) copies
it from any OCI registry — a manifest, or an index with every platform —
with its blobs and its referrers (signatures, SBOMs), verifying every
digest, and tags it NAME:TAG (NAME alone keeps the source's tag). Progress
is printed while it runs; a failure names the source and the cause.

REF is host[:port]/repository:tag or host[:port]/repository@digest, over
HTTPS (prefix http:// for a plain-HTTP source). The source credentials
(--username, and the password read from --password-file, or
$OUTPOST_IMPORT_PASSWORD) go to the server, which sends them only to the
source's origin and its token realm on that origin. --source-ca-file is a
CA the server trusts for the source besides the system roots (--ca-file is
the CA of this server, as for every client command).`,
		Example: `  outpost import --source registry.example.com/library/nginx:1.27 --image mirror/nginx:1.27
  outpost import --source partner.example.com:5000/apps/web:4.2 --image apps/web --username puller --password-file pw.txt --source-ca-file partner-ca.crt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !o.allPlatforms {
				return errors.New("--all-platforms=false: importing one platform of an index is not supported; every platform is copied")
			}
			req := importer.Request{Source: o.source, Image: o.image, Username: o.username, Password: os.Getenv("OUTPOST_IMPORT_PASSWORD")}
			if o.passwordFile != "" {
				b, err := os.ReadFile(o.passwordFile)
				if err != nil {
					return fmt.Errorf("--password-file: %w", err)
				}
				req.Password = strings.TrimRight(string(b), "\r\n")
			}
			if o.sourceCA != "" {
				b, err := os.ReadFile(o.sourceCA)
				if err != nil {
					return fmt.Errorf("--source-ca-file: %w", err)
				}
				req.CACertificate = string(b)
			}
			if err := checkQuery[importer.Import](&o.outputOptions); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			var job importer.Import
			if err := c.Do(cmd.Context(), http.MethodPost, "/api/v1/imports", req, &job); err != nil {
				return err
			}
			errw := cmd.ErrOrStderr()
			last := ""
			for job.State == importer.StateRunning {
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(o.interval):
				}
				if err := c.Do(cmd.Context(), http.MethodGet, "/api/v1/imports/"+url.PathEscape(job.ID), nil, &job); err != nil {
					return err
				}
				line := fmt.Sprintf("%s: %d manifests, %d bytes", job.Image, job.Manifests, job.Bytes)
				if line != last {
					fmt.Fprintf(errw, "%s %s\n", time.Now().UTC().Format(time.TimeOnly), line)
					last = line
				}
			}
			if job.State == importer.StateFailed {
				return errors.New(job.Error)
			}
			return o.render(cmd.OutOrStdout(), job, table{headers: []string{"IMAGE", "DIGEST", "MANIFESTS", "BYTES", "SOURCE"}, rows: listRows("image", "digest", "manifests", "bytes", "source")})
		},
	}
	o.clientOptions.bind(cmd.Flags())
	o.outputOptions.bind(cmd.Flags())
	cmd.Flags().StringVar(&o.source, "source", "", "image to import: host[:port]/repository:tag or …@digest")
	cmd.Flags().StringVarP(&o.image, "image", "t", "", "target repository[:tag]")
	cmd.Flags().StringVarP(&o.username, "username", "u", "", "user name at the source")
	cmd.Flags().StringVar(&o.passwordFile, "password-file", "", "file holding the password at the source (default: $OUTPOST_IMPORT_PASSWORD)")
	cmd.Flags().StringVar(&o.sourceCA, "source-ca-file", "", "CA certificate the server trusts for the source, besides the system roots")
	cmd.Flags().BoolVar(&o.allPlatforms, "all-platforms", true, "copy every platform of an index (the only mode)")
	cmd.Flags().DurationVar(&o.interval, "interval", time.Second, "how often to poll the server for progress")
	_ = cmd.MarkFlagRequired("source")
	_ = cmd.MarkFlagRequired("image")
	return cmd
}
