package adminapi

import (
	"net/http"

	"github.com/outpost-registry/outpost/internal/catalog"
	"github.com/outpost-registry/outpost/internal/importer"
)

// RegisterRepositories adds the repository browser: any authenticated
// caller, each repository authorized by the caller's scope map.
func (a *API) RegisterRepositories(c *catalog.Catalog) {
	a.HandleAs("GET /api/v1/repositories", c.List)
	a.HandleAs("GET /api/v1/repositories/{path...}", c.Get)
	a.HandleAs("DELETE /api/v1/repositories/{path...}", c.Delete)
}

// RegisterImports adds the image import routes (admin only). readOnly,
// when not nil, returns a denial while writes are refused (a ReadOnly
// connected registry).
func (a *API) RegisterImports(im *importer.Importer, readOnly func() error) {
	a.Handle("POST /api/v1/imports", func(r *http.Request) (int, any, error) {
		if readOnly != nil {
			if err := readOnly(); err != nil {
				return 0, nil, err
			}
		}
		var req importer.Request
		if err := decode(r, &req); err != nil {
			return 0, nil, err
		}
		out, err := im.Start(req)
		return http.StatusAccepted, out, err
	})
	a.Handle("GET /api/v1/imports/{id}", func(r *http.Request) (int, any, error) {
		out, err := im.Get(r.PathValue("id"))
		return http.StatusOK, out, err
	})
}
