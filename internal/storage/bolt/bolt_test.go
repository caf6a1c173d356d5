package bolt_test

import (
	"path/filepath"
	"testing"

	"github.com/outpost-registry/outpost/internal/storage"
	"github.com/outpost-registry/outpost/internal/storage/bolt"
	"github.com/outpost-registry/outpost/internal/storage/storagetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storagetest.TestMetadata(t, func(t *testing.T) storage.Metadata {
		s, err := bolt.Open(filepath.Join(t.TempDir(), "metadata.db"))
		if err != nil {
			t.Fatal(err)
		}
		return storagetest.Closing(t, s)
	})
}
