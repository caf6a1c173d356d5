package server

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/adminapi"
	"github.com/outpost-registry/outpost/internal/bundle"
	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/controlplane"
	"github.com/outpost-registry/outpost/internal/pki"
	"github.com/outpost-registry/outpost/internal/protocol"
	"github.com/outpost-registry/outpost/internal/storage/bolt"
	"github.com/outpost-registry/outpost/internal/storage/fs"
)

// registerBundles adds the air-gap bundle routes: export and the public
// key at the root (and any registry with a fleet), inventory and import
// everywhere. A root hands its bundle key to its children at activation;
// a connected registry trusts the key its parent sent.
func registerBundles(mgmt *adminapi.API, mux *http.ServeMux, cfg config.Config, blobs *fs.Store, meta *bolt.Store, log *slog.Logger, ep *edgeParts, fleet *controlplane.Service) error {
	o := bundle.Options{
		Blobs: blobs, Uploads: blobs, Metadata: meta, Log: log, DataDir: cfg.Data, Issuer: cfg.LoginServer,
		Walk: func(ctx context.Context, fn func(digest.Digest, int64) error) error {
			return blobs.WalkBlobs(ctx, func(b fs.BlobFile) error { return fn(b.Digest, b.Size) })
		},
		Fleet: func(name string) (bundle.FleetSite, error) {
			c, err := fleet.Get(name)
			if err != nil {
				return bundle.FleetSite{}, err
			}
			fs := bundle.FleetSite{Repositories: c.Repositories}
			for _, b := range c.Bundles {
				for _, im := range b.Images {
					fs.Held = append(fs.Held, bundle.Image{Repository: im.Repository, Tag: im.Tag, Digest: digest.Digest(im.Digest)})
				}
			}
			return fs, nil
		},
	}
	if o.Issuer == "" {
		o.Issuer = loginServerFromAddr(cfg.Addr)
	}
	if ep == nil {
		key, err := pki.LoadOrCreateBundleKey(cfg.Data)
		if err != nil {
			return err
		}
		fleet.SetBundleKey(string(bundle.EncodePublicKey(key.Public().(ed25519.PublicKey))))
	} else {
		o.Name = ep.name
		o.TrustedKey = func() ed25519.PublicKey {
			pem := ep.edge.BundleKey()
			if pem == "" {
				return nil
			}
			k, err := bundle.ParsePublicKey([]byte(pem))
			if err != nil {
				log.Warn("the parent's bundle key is not valid", "err", err)
				return nil
			}
			return k
		}
		o.OnImport = func(r bundle.Record) {
			b := protocol.BundleImport{ID: r.ID, Time: r.Time, BlobsWritten: r.Blobs, BytesWritten: r.Bytes}
			for _, im := range r.Images {
				b.Images = append(b.Images, protocol.ImportedImage{Repository: im.Repository, Tag: im.Tag, Digest: string(im.Digest)})
			}
			ep.edge.RecordBundle(b)
		}
	}
	b, err := bundle.NewAPI(o)
	if err != nil {
		return fmt.Errorf("bundle routes: %w", err)
	}
	mgmt.RegisterBundles(b)
	mux.HandleFunc("GET /api/v1/pki/bundle.pub", b.PublicKey)
	return nil
}
