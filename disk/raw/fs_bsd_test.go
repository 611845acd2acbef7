//go:build darwin || freebsd

package raw

import (
	"os"
	"syscall"
	"testing"
)

// fsInfo is what a test needs to know about the file system under a file.
type fsInfo struct {
	name  string
	holes bool  // known to report holes through SEEK_DATA/SEEK_HOLE
	block int64 // st_blksize; 0 if unknown
}

// fileSystem gives st_blksize, and demands no holes: whether SEEK_DATA finds
// them depends on the file system (APFS, UFS and ZFS do; HFS+ and others do
// not), so a test asserts the exact layout only where holes are reported.
func fileSystem(t *testing.T, f *os.File) fsInfo {
	t.Helper()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return fsInfo{name: "unknown", block: int64(st.Sys().(*syscall.Stat_t).Blksize)}
}
