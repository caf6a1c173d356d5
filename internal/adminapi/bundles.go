package adminapi

import "github.com/outpost-registry/outpost/internal/bundle"

// RegisterBundles adds the air-gap bundle routes (admin only;
// docs/bundles.md): export, inventory, and the import session. The public
// key route is the server's, beside the CA certificate.
func (a *API) RegisterBundles(b *bundle.API) {
	a.HandleStream("POST /api/v1/bundles/export", b.Export)
	a.HandleStream("GET /api/v1/bundles/inventory", b.Inventory)
	a.Handle("POST /api/v1/bundles/imports", b.Open)
	a.Handle("GET /api/v1/bundles/imports/{id}/blobs/{digest}", b.HasBlob)
	a.Handle("PUT /api/v1/bundles/imports/{id}/blobs/{digest}", b.PutBlob)
	a.Handle("GET /api/v1/bundles/imports/{id}/manifests/{digest}", b.HasManifest)
	a.Handle("PUT /api/v1/bundles/imports/{id}/manifests/{digest}", b.PutManifest)
	a.Handle("POST /api/v1/bundles/imports/{id}/commit", b.Commit)
}
