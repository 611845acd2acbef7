package raw

import (
	"errors"
	"os"
	"unsafe"

	"golang.org/x/sys/windows"
)

// allocatedRange is FILE_ALLOCATED_RANGE_BUFFER (winioctl.h): the input and
// the output records of FSCTL_QUERY_ALLOCATED_RANGES.
type allocatedRange struct {
	Offset int64 // FileOffset
	Length int64
}

// dataExtents adds [off, end) of f to out as data and holes, as
// FSCTL_QUERY_ALLOCATED_RANGES reports them. Per the Microsoft docs for that
// control code, only sparse or compressed files can have ranges the system
// knows to be zero; for any other file it returns the requested range as one
// entry, i.e. all data.
func dataExtents(f *os.File, off, end int64, out *extentList) {
	pos := off
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(h uintptr) { pos = queryAllocated(windows.Handle(h), off, end, out) })
	}
	out.add(pos, end, false) // whatever was not mapped is data
}

// queryAllocated maps [pos, end) and returns where it stopped: end, or an
// earlier offset from which the file system could not tell.
func queryAllocated(h windows.Handle, pos, end int64, out *extentList) int64 {
	var ranges [64]allocatedRange
	const recSize = uint32(unsafe.Sizeof(allocatedRange{}))
	for pos < end {
		in := allocatedRange{Offset: pos, Length: end - pos}
		var n uint32
		err := windows.DeviceIoControl(h, windows.FSCTL_QUERY_ALLOCATED_RANGES,
			(*byte)(unsafe.Pointer(&in)), recSize,
			(*byte)(unsafe.Pointer(&ranges[0])), uint32(len(ranges))*recSize, &n, nil)
		// ERROR_MORE_DATA: the buffer was full; the records in it are valid
		// and the next query starts where the last of them ends.
		more := errors.Is(err, windows.ERROR_MORE_DATA)
		if err != nil && !more {
			// E.g. ERROR_INVALID_FUNCTION on a file system without the
			// control code: report data, never guess a hole.
			return pos
		}
		start := pos
		for _, r := range ranges[:min(int(n/recSize), len(ranges))] {
			if r.Offset < 0 || r.Length <= 0 {
				return pos // a broken answer: the rest is data
			}
			if r.Offset >= end {
				break
			}
			// Ranges are rounded to the file system's allocation unit, so
			// the first may begin before pos and the last end after end.
			from := max(r.Offset, pos)
			to := end
			if r.Length < end-r.Offset {
				to = r.Offset + r.Length
			}
			if to <= from {
				continue
			}
			out.add(pos, from, true)
			out.add(from, to, false)
			pos = to
		}
		if !more {
			out.add(pos, end, true)
			return end
		}
		if pos == start {
			return pos // ERROR_MORE_DATA without progress: the rest is data
		}
	}
	return pos
}

// makeSparse marks f sparse (FSCTL_SET_SPARSE; a NULL input buffer means
// "set"), so that extending it with SetEndOfFile leaves the new range
// unallocated as ftruncate does on Unix file systems. Without it NTFS
// allocates the whole virtual size. A file system that cannot hold sparse
// files still gets a correct image, only not a sparse one, so an error here
// is not one for the caller.
func makeSparse(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(h uintptr) {
		var n uint32
		_ = windows.DeviceIoControl(windows.Handle(h), windows.FSCTL_SET_SPARSE, nil, 0, nil, 0, &n, nil)
	})
}
