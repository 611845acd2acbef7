package qcow2

import (
	"bufio"
	"encoding/binary"
	"io"
)

// rdSnapshotEntryLength is the fixed part of a snapshot table entry
// (qcow2.txt "Snapshots").
const rdSnapshotEntryLength = 40

// rdCheckSnapshotTable checks that the snapshot table lies inside the file,
// without keeping anything from it: the reader reads the active L1 table
// and ignores snapshots, but a table that overlaps the header or runs past
// the end of the file marks the image as malformed (qemu-img check finds
// thousands of errors in such images).
func rdCheckSnapshotTable(r io.ReaderAt, fileSize int64, h *Header) error {
	if h.NbSnapshots == 0 {
		return nil
	}
	off := int64(h.SnapshotsOffset)
	if off < h.ClusterSize() {
		return formatErr("snapshot table of %d entries at host offset %#x overlaps the header", h.NbSnapshots, off)
	}
	if need := int64(h.NbSnapshots) * rdSnapshotEntryLength; off > fileSize || need > fileSize-off {
		return formatErr("snapshot table of %d entries at host offset %#x runs past the end of the file (%d bytes)",
			h.NbSnapshots, off, fileSize)
	}
	br := bufio.NewReaderSize(io.NewSectionReader(r, off, fileSize-off), 64<<10)
	var entry [rdSnapshotEntryLength]byte
	pos := off
	for i := range int64(h.NbSnapshots) {
		if _, err := io.ReadFull(br, entry[:]); err != nil {
			return formatErr("snapshot %d of %d at host offset %#x runs past the end of the file (%d bytes)", i, h.NbSnapshots, pos, fileSize)
		}
		be := binary.BigEndian
		idLen := int64(be.Uint16(entry[12:]))
		nameLen := int64(be.Uint16(entry[14:]))
		extraLen := int64(be.Uint32(entry[36:]))
		length := rdSnapshotEntryLength + extraLen + idLen + nameLen
		if length > fileSize-pos {
			return formatErr("snapshot %d of %d at host offset %#x (%d bytes) runs past the end of the file (%d bytes)",
				i, h.NbSnapshots, pos, length, fileSize)
		}
		if i+1 < int64(h.NbSnapshots) {
			length = (length + 7) &^ 7 // the next entry starts 8-aligned
		}
		if _, err := br.Discard(int(length - rdSnapshotEntryLength)); err != nil {
			return formatErr("snapshot %d of %d at host offset %#x runs past the end of the file (%d bytes)", i, h.NbSnapshots, pos, fileSize)
		}
		pos += length
	}
	return nil
}
