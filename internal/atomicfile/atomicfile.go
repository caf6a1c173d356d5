// Package atomicfile replaces files so that readers never see a partial
// one, nor one with wider permissions than asked.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// syncFile flushes a file to stable storage. It is a variable so that a
// test can see Write sync the new content before the rename.
var syncFile = (*os.File).Sync

// Write replaces path with data through a synced temporary file in the
// same directory (created 0600, then set to perm) and a rename.
func Write(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = syncFile(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
