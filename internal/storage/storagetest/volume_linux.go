package storagetest

import (
	"os"
	"syscall"
	"testing"
)

// SmallVolume mounts a tmpfs of size bytes on a fresh directory for the
// length of the test and returns the directory, so that tests can fill a
// real volume. It skips the test when the process may not mount (not
// root, or no CAP_SYS_ADMIN).
func SmallVolume(t testing.TB, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("a real full volume needs a tmpfs mount, which needs root (running as uid %d)", os.Geteuid())
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size="+size+",mode=0750"); err != nil {
		t.Skipf("a real full volume needs a tmpfs mount, which failed (no CAP_SYS_ADMIN?): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}
