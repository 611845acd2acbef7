package disk

import (
	"os"
	"syscall"
)

// Preallocate asks the file system to allocate [off, off+n) of f before it
// is written. For appends (the qcow2 writer's data runs) that beats
// extending the file block by block (delayed allocation), which is why
// qemu's qcow2 driver does the same. It does not pay for writes scattered
// in a sparse file (raw outputs), where each range becomes unwritten extents
// that the write must convert. It is only a hint: file systems without
// fallocate ignore it, and a real failure (a full disk) shows up in the
// write that follows.
func Preallocate(f *os.File, off, n int64) {
	if n > 0 {
		_ = syscall.Fallocate(int(f.Fd()), 0, off, n)
	}
}
