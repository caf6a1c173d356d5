//go:build linux || darwin

package fs

import (
	"fmt"
	"syscall"
)

// volumeSpace returns the bytes available to this process and the size
// of the volume holding dir.
func volumeSpace(dir string) (free, total uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	bs := uint64(st.Bsize) //nolint:gosec // a block size is positive
	return st.Bavail * bs, st.Blocks * bs, nil
}
