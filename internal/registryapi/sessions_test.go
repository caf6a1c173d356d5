package registryapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/outpost-registry/outpost/internal/registryapi"
)

// wantTooMany checks that a new session in repo is refused with 429
// TOOMANYREQUESTS and a Retry-After.
func (r *registry) wantTooMany(repo string) {
	r.t.Helper()
	r.wantError(http.StatusTooManyRequests, "TOOMANYREQUESTS", http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil, nil)
	resp, _ := r.do(http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil, nil)
	if got := resp.Header.Get("Retry-After"); got == "" {
		r.t.Errorf("429 without Retry-After")
	}
}

// TestUploadSessionsPerRepository: a repository holding its limit of open
// sessions refuses one more with 429 until one is committed, cancelled or
// discarded; other repositories and monolithic uploads are not affected.
func TestUploadSessionsPerRepository(t *testing.T) {
	t.Parallel()
	r := newRegistryLimits(t, registryapi.Limits{UploadSessionsPerRepository: 2})
	a := r.startSession("lib/a")
	b := r.startSession("lib/a")
	r.wantTooMany("lib/a")
	other := r.startSession("lib/other")
	r.pushBlob("lib/a", []byte("monolithic uploads hold no session")) // still 201

	// A request naming the session under another repository frees nothing.
	foreign := strings.Replace(a, "/v2/lib/a/", "/v2/lib/other/", 1)
	r.wantError(http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", http.MethodDelete, foreign, nil, nil)
	r.wantTooMany("lib/a")

	// Cancelled: a place frees.
	r.want(http.StatusNoContent, http.MethodDelete, a, nil, nil)
	r.startSession("lib/a")
	r.wantTooMany("lib/a")

	// Committed.
	data := []byte("blob content")
	r.want(http.StatusCreated, http.MethodPut, b+"?digest="+string(digest.FromBytes(data)), octets, data)
	b = r.startSession("lib/a")
	r.wantTooMany("lib/a")

	// Discarded by a wrong digest.
	r.wantError(http.StatusBadRequest, "DIGEST_INVALID", http.MethodPut, b+"?digest="+string(digest.FromString("other")), octets, data)
	r.startSession("lib/a")
	r.wantTooMany("lib/a")
	r.want(http.StatusNoContent, http.MethodDelete, other, nil, nil)
}

// TestUploadSessionsPerCredential: every caller without an Identifier is
// one credential, whose limit spans repositories.
func TestUploadSessionsPerCredential(t *testing.T) {
	t.Parallel()
	r := newRegistryLimits(t, registryapi.Limits{UploadSessionsPerCredential: 3})
	first := r.startSession("team/a")
	r.startSession("team/b")
	r.startSession("team/c")
	r.wantTooMany("team/d")
	r.wantTooMany("team/a")
	r.want(http.StatusNoContent, http.MethodDelete, first, nil, nil)
	r.startSession("team/d")
	r.wantTooMany("team/e")
}
