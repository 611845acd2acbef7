//go:build linux

package output

import (
	"os"

	"golang.org/x/sys/unix"
)

// writeBack starts the write-back of f's dirty pages (sync_file_range(2)
// SYNC_FILE_RANGE_WRITE, which does not wait) and, with drop, drops the
// pages that earlier calls wrote back (posix_fadvise(2)
// POSIX_FADV_DONTNEED leaves dirty pages and pages under write-back
// alone).
func writeBack(f *os.File, drop bool) func() {
	fd := int(f.Fd())
	return func() {
		// Errors are not ours to report: a failing disk fails the fsync.
		_ = unix.SyncFileRange(fd, 0, 0, unix.SYNC_FILE_RANGE_WRITE)
		if drop {
			_ = unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED)
		}
	}
}

// dropCached drops f's pages once they are on the disk.
func dropCached(f *os.File) { _ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED) }
