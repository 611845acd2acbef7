//go:build !linux && !darwin && !freebsd && !windows

package raw

import "os"

// dataExtents reports all of [off, end) as data: golang.org/x/sys/unix has
// no SEEK_DATA for this OS, and data is always a safe answer (the converter's
// zero detection still finds the zeros, it just has to read them).
func dataExtents(_ *os.File, off, end int64, out *extentList) {
	out.add(off, end, false)
}

// makeSparse does nothing: ftruncate leaves holes where the file system can.
func makeSparse(*os.File) {}
