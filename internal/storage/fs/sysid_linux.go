package fs

import (
	"os"
	"syscall"
)

// sysID adds the inode and change time, which a write cannot set back,
// to a file's identity.
func sysID(fi os.FileInfo, id *fileID) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.ino = st.Ino
		id.ctime = st.Ctim.Nano()
	}
}
