//go:build linux || darwin || freebsd

package raw

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// The OSes in this file's build constraint are those for which
// golang.org/x/sys/unix defines SEEK_DATA and SEEK_HOLE. The values differ
// between them (Linux and FreeBSD: 3 and 4; macOS: 4 and 3), so they must
// come from unix, never from a literal: with the two swapped, a dense file
// reads as one hole and converts to an all-zero image.

// dataExtents adds [off, end) of f to out as data and holes, as lseek(2)'s
// SEEK_DATA and SEEK_HOLE report them.
func dataExtents(f *os.File, off, end int64, out *extentList) {
	pos := off
	if rc, err := f.SyscallConn(); err == nil {
		// Control, not Fd: it keeps f open for the duration and leaves its
		// blocking mode alone. Moving the file offset is harmless because
		// ReadAt and WriteAt use pread and pwrite.
		_ = rc.Control(func(fd uintptr) { pos = seekExtents(int(fd), off, end, out) })
	}
	out.add(pos, end, false) // whatever was not mapped is data
}

// seekExtents maps [pos, end) and returns where it stopped: end, or an
// earlier offset from which the file system could not tell.
func seekExtents(fd int, pos, end int64, out *extentList) int64 {
	for pos < end {
		data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			// lseek(2): ENXIO means no data at or after pos, i.e. a hole
			// to the end of the file.
			out.add(pos, end, true)
			return end
		}
		if err != nil || data < pos {
			// EINVAL where the file system does not support SEEK_DATA, or
			// anything unexpected: report data and let the converter's
			// zero detection find the zeros. Never guess a hole.
			return pos
		}
		if data >= end {
			out.add(pos, end, true)
			return end
		}
		out.add(pos, data, true)
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil || hole <= data || hole > end {
			// lseek(2) promises a hole at the end of the file, so a failure
			// or an answer past end means data up to end. hole <= data
			// would be a broken answer and would never make progress.
			hole = end
		}
		out.add(data, hole, false)
		pos = hole
	}
	return pos
}

// makeSparse does nothing: on these systems extending a file with ftruncate
// leaves the new range unallocated wherever the file system supports holes.
func makeSparse(*os.File) {}
