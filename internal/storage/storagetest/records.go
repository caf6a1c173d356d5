package storagetest

import (
	"context"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/outpost-registry/outpost/internal/storage"
)

// testRecordPerRepository stores the same bytes (so the same digest) as
// different records: in two repositories, and again in one after a
// delete. A body without a mediaType field takes its type from the
// Content-Type it was pushed with, so this happens. Each repository must
// answer with the record it stored, however the reads are interleaved.
func testRecordPerRepository(t *testing.T, m storage.Metadata) {
	ctx := context.Background()
	body := []byte(`{"schemaVersion":2,"config":{}}`)
	d := digest.FromBytes(body)
	oci := &storage.ManifestRecord{Digest: d, MediaType: v1.MediaTypeImageManifest, ArtifactType: "application/vnd.example", Body: body}
	docker := &storage.ManifestRecord{Digest: d, MediaType: "application/vnd.docker.distribution.manifest.v2+json", Body: body}
	put(t, m, "oci", oci, "v1")
	for range 2 {
		wantManifest(t, m, "oci", "v1", oci)
	}
	put(t, m, "docker", docker, "v1")
	for range 2 {
		wantManifest(t, m, "docker", "v1", docker)
		wantManifest(t, m, "docker", string(d), docker)
		wantManifest(t, m, "oci", "v1", oci)
	}
	// Deleted and pushed again with another type, in the same repository.
	if err := m.DeleteManifest(ctx, "oci", d); err != nil {
		t.Fatal(err)
	}
	put(t, m, "oci", docker, "v1")
	wantManifest(t, m, "oci", "v1", docker)
}
