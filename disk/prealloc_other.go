//go:build !linux

package disk

import "os"

// Preallocate is a no-op where fallocate does not exist.
func Preallocate(f *os.File, off, n int64) {}
