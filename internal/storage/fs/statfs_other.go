//go:build !linux && !darwin

package fs

import "errors"

// volumeSpace is not implemented on this platform.
func volumeSpace(string) (free, total uint64, err error) {
	return 0, 0, errors.New("free space of the data volume: not supported on this platform")
}
