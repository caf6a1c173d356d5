//go:build !linux

package storagetest

import "testing"

// SmallVolume skips the test: mounting a small tmpfs needs Linux.
func SmallVolume(t testing.TB, _ string) string {
	t.Helper()
	t.Skip("a real full volume needs a tmpfs mount, which needs Linux")
	return ""
}
