package raw

import (
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// fsInfo is what a test needs to know about the file system under a file.
type fsInfo struct {
	name  string
	holes bool  // known to report holes through SEEK_DATA/SEEK_HOLE
	block int64 // st_blksize; 0 if unknown
}

// fileSystem names the file system under f. ext4, tmpfs and xfs implement
// SEEK_DATA/SEEK_HOLE (lseek(2)), so on them a test demands holes; elsewhere
// (overlayfs, NFS, ...) it accepts whatever is reported, as long as no data
// is lost.
func fileSystem(t *testing.T, f *os.File) fsInfo {
	t.Helper()
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &sfs); err != nil {
		t.Fatal(err)
	}
	fs := fsInfo{name: "unknown"}
	switch uint32(sfs.Type) {
	case unix.EXT4_SUPER_MAGIC:
		fs.name, fs.holes = "ext4", true
	case unix.TMPFS_MAGIC:
		fs.name, fs.holes = "tmpfs", true
	case unix.XFS_SUPER_MAGIC:
		fs.name, fs.holes = "xfs", true
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	fs.block = int64(st.Sys().(*syscall.Stat_t).Blksize)
	return fs
}
