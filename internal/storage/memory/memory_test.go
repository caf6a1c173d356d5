package memory_test

import (
	"testing"

	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/storage/memory"
	"github.com/outpost-registry/outpost/internal/storage/storagetest"
)

func TestBlobConformance(t *testing.T) {
	storagetest.TestBlobStore(t, func(*testing.T) (storage.BlobStore, storage.Uploads) {
		b := memory.NewBlobs()
		return b, b
	})
}

func TestMetadataConformance(t *testing.T) {
	storagetest.TestMetadata(t, func(*testing.T) storage.Metadata { return memory.NewMetadata() })
}
