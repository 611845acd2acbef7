//go:build unix

package main

import (
	"io/fs"
	"syscall"
)

// allocatedBytes is the space a file takes on disk (st_blocks), which
// qemu-img info calls the disk size.
func allocatedBytes(st fs.FileInfo) int64 {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return int64(sys.Blocks) * 512
	}
	return st.Size()
}
