package qcow2

import (
	"encoding/binary"
	"fmt"
	"io"
	"iter"

	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// snapshotHeaderSize is the fixed part of a snapshot table entry
// (qcow2.txt "Snapshots"): L1 offset and size, id and name lengths, times,
// VM state size, extra data size.
const snapshotHeaderSize = 40

// snapshotEntry is the fixed part of one snapshot table entry, and where
// the entry lies.
type snapshotEntry struct {
	index     uint32
	offset    uint64 // host offset of the entry, 8-aligned
	length    uint64 // fixed part, extra data, id and name; the next entry starts 8-aligned after it
	l1Offset  uint64
	l1Size    uint32
	extraSize uint32
}

// snapshotEntries walks the snapshot table the header declares, entry by
// entry: the one walk that the reader and the checker share. Bytes past the
// end of the file read as zeros, as qemu reads them; the caller decides
// whether an entry that lies there is an error, and may stop early. Only
// the fixed parts are read, through a window, so that the walk reads each
// byte of the table at most once.
func snapshotEntries(r io.ReaderAt, fileSize int64, h *Header) iter.Seq2[snapshotEntry, error] {
	return func(yield func(snapshotEntry, error) bool) {
		var window []byte
		var windowOff uint64
		off := h.SnapshotsOffset
		for i := range h.NbSnapshots {
			off = (off + 7) &^ 7
			if window == nil || off < windowOff || off+snapshotHeaderSize > windowOff+uint64(len(window)) {
				if window == nil {
					window = make([]byte, 64<<10)
				}
				windowOff = off
				if err := blockio.ReadPadded(r, fileSize, window, int64(off)); err != nil {
					yield(snapshotEntry{}, fmt.Errorf("qcow2: reading snapshot table entry %d at host offset %#x: %w", i, off, err))
					return
				}
			}
			b := window[off-windowOff:]
			be := binary.BigEndian
			e := snapshotEntry{
				index:     i,
				offset:    off,
				l1Offset:  be.Uint64(b[0:]),
				l1Size:    be.Uint32(b[8:]),
				extraSize: be.Uint32(b[36:]),
			}
			idSize, nameSize := uint64(be.Uint16(b[12:])), uint64(be.Uint16(b[14:]))
			e.length = snapshotHeaderSize + uint64(e.extraSize) + idSize + nameSize
			if !yield(e, nil) {
				return
			}
			off += e.length
		}
	}
}

// checkSnapshotTablePlace refuses a snapshot table whose fixed parts alone
// cannot fit in the file, or that overlaps the header: a reader that ignores
// snapshots still must not accept such a table (qemu-img check finds
// thousands of errors in these images). It reads nothing.
func (h *Header) checkSnapshotTablePlace(fileSize int64) error {
	if h.NbSnapshots == 0 {
		return nil
	}
	off := h.SnapshotsOffset
	if off < uint64(h.ClusterSize()) {
		return formatErr("snapshot table of %d entries at host offset %#x overlaps the header", h.NbSnapshots, off)
	}
	if need := uint64(h.NbSnapshots) * snapshotHeaderSize; off > uint64(fileSize) || need > uint64(fileSize)-off {
		return formatErr("snapshot table of %d entries at host offset %#x runs past the end of the file (%d bytes)",
			h.NbSnapshots, off, fileSize)
	}
	return nil
}

// checkSnapshotTable checks that the snapshot table lies inside the file,
// without keeping anything from it: the reader reads the active L1 table
// and ignores snapshots.
func checkSnapshotTable(r io.ReaderAt, fileSize int64, h *Header) error {
	if err := h.checkSnapshotTablePlace(fileSize); err != nil {
		return err
	}
	for e, err := range snapshotEntries(r, fileSize, h) {
		if err != nil {
			return err
		}
		if e.offset > uint64(fileSize) || e.length > uint64(fileSize)-e.offset {
			return formatErr("snapshot %d of %d at host offset %#x (%d bytes) runs past the end of the file (%d bytes)",
				e.index, h.NbSnapshots, e.offset, e.length, fileSize)
		}
	}
	return nil
}
