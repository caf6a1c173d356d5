package server

import (
	"net/http"
	"strings"
)

// exactPaths sends /v2 requests straight to the registry API, and answers
// 404 to any other path with an empty, "." or ".." segment. http.ServeMux
// would answer both with a 301 to the cleaned path, which makes a client
// (or a cache in front) fetch, and push to, a path it did not ask for:
// "/v2/team/../admin/manifests/x" must not become "/v2/admin/manifests/x".
// The API's route parser refuses such /v2 paths itself (404, or 400
// NAME_INVALID), with an OCI error body.
func exactPaths(mux, api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p == "/v2" || strings.HasPrefix(p, "/v2/") {
			api.ServeHTTP(w, r)
			return
		}
		if !cleanPath(p) {
			http.NotFound(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// cleanPath reports whether p is absolute with no empty, "." or ".."
// segment (a trailing slash is allowed).
func cleanPath(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	segs := strings.Split(p[1:], "/")
	for i, s := range segs {
		if s == "." || s == ".." || (s == "" && i != len(segs)-1) {
			return false
		}
	}
	return true
}
