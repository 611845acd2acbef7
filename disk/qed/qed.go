// Package qed reads, writes and checks qemu's QED format
// (docs/interop/qed_spec.txt): a little-endian header, one L1 table and L2
// tables of table_size clusters each, whose entries are 0 (unallocated), 1
// (a zero cluster) or the offset of a data cluster. There are no refcounts:
// a cluster is in use when a table points at it.
//
// Images with a backing file are refused: an image must not make us open
// another file.
package qed

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// Sniff recognises the magic "QED\0".
func Sniff(r io.ReaderAt, _ int64) bool {
	return bytes.Equal(blockio.Peek(r, 0, 4), []byte("QED\x00"))
}

// Feature bits (qed_spec.txt "Header").
const (
	featBacking     = 1 << 0
	featNeedCheck   = 1 << 1
	featBackingNoFm = 1 << 2
	featKnown       = featBacking | featNeedCheck | featBackingNoFm
)

// Geometry bounds (qed_spec.txt "Field descriptions").
const (
	minClusterSize = 4 << 10
	maxClusterSize = 64 << 20
	minTableSize   = 1
	maxTableSize   = 16
	headerBytes    = 64
)

// Entries with a special meaning (qed_spec.txt "Data cluster offsets").
const (
	entryUnallocated = 0
	entryZero        = 1
)

// header is the QED header, decoded.
type header struct {
	clusterSize   uint32 // bytes
	tableSize     uint32 // clusters per L1 or L2 table
	headerSize    uint32 // clusters before the first regular cluster
	features      uint64
	compat        uint64
	autoclear     uint64
	l1Offset      uint64
	imageSize     uint64 // virtual size in bytes
	backingOffset uint32
	backingSize   uint32
}

func parseHeader(b []byte) header {
	le := binary.LittleEndian
	return header{
		clusterSize:   le.Uint32(b[4:]),
		tableSize:     le.Uint32(b[8:]),
		headerSize:    le.Uint32(b[12:]),
		features:      le.Uint64(b[16:]),
		compat:        le.Uint64(b[24:]),
		autoclear:     le.Uint64(b[32:]),
		l1Offset:      le.Uint64(b[40:]),
		imageSize:     le.Uint64(b[48:]),
		backingOffset: le.Uint32(b[56:]),
		backingSize:   le.Uint32(b[60:]),
	}
}

func (h header) marshal() []byte {
	b := make([]byte, headerBytes)
	le := binary.LittleEndian
	copy(b, "QED\x00")
	le.PutUint32(b[4:], h.clusterSize)
	le.PutUint32(b[8:], h.tableSize)
	le.PutUint32(b[12:], h.headerSize)
	le.PutUint64(b[16:], h.features)
	le.PutUint64(b[24:], h.compat)
	le.PutUint64(b[32:], h.autoclear)
	le.PutUint64(b[40:], h.l1Offset)
	le.PutUint64(b[48:], h.imageSize)
	le.PutUint32(b[56:], h.backingOffset)
	le.PutUint32(b[60:], h.backingSize)
	return b
}

func validClusterSize(n uint32) bool {
	return n >= minClusterSize && n <= maxClusterSize && n&(n-1) == 0
}

func validTableSize(n uint32) bool {
	return n >= minTableSize && n <= maxTableSize && n&(n-1) == 0
}

// maxImageSize is the largest virtual size the geometry maps, computed as
// qemu computes it (block/qed.c qed_max_image_size): modulo 2^64, so that
// the largest geometries, whose true maximum passes 2^64, give a small or
// zero maximum, and an image qemu refuses to open or create we refuse too.
func maxImageSize(clusterSize, tableSize uint32) uint64 {
	entries := uint64(tableSize*clusterSize) / 8
	return entries * uint64(clusterSize) * entries
}

// geometry is what the reader, the writer and the check derive from a
// valid header.
type geometry struct {
	clusterSize int64
	clusterBits uint
	tableBytes  int64 // bytes of one L1 or L2 table
	entryBits   uint  // log2 of the entries in a table
	headerBytes int64 // bytes before the first regular cluster
}

func (h header) geometry() geometry {
	cs := int64(h.clusterSize)
	tb := cs * int64(h.tableSize)
	return geometry{
		clusterSize: cs,
		clusterBits: uint(bits.TrailingZeros32(h.clusterSize)),
		tableBytes:  tb,
		entryBits:   uint(bits.TrailingZeros64(uint64(tb / 8))),
		headerBytes: int64(h.headerSize) * cs,
	}
}

// l2Span is the virtual bytes one L2 table maps.
func (g geometry) l2Span() int64 { return g.clusterSize << g.entryBits }

// l1Entries is the number of L1 entries that map a virtual size.
func (g geometry) l1Entries(size int64) int64 {
	return (size + g.l2Span() - 1) >> (g.entryBits + g.clusterBits)
}

// clusterOK says whether a data cluster may live at host offset off in a
// file of fileSize bytes rounded down to a cluster (block/qed.h
// qed_check_cluster_offset): aligned, past the header, inside the file.
func (g geometry) clusterOK(off uint64, fileSize int64) bool {
	return off&uint64(g.clusterSize-1) == 0 && off >= uint64(g.headerBytes) && off < uint64(fileSize)
}

// tableOK is clusterOK for a whole table. qemu's own version
// (qed_check_table_offset) refuses every table of a table_size=1 image by
// an off-by-one in its overflow test; we follow the specification.
func (g geometry) tableOK(off uint64, fileSize int64) bool {
	return g.clusterOK(off, fileSize) && fileSize >= g.tableBytes && off <= uint64(fileSize-g.tableBytes)
}

// Inspect reads the little-endian header and refuses unknown features, a
// backing file, absurd sizes and a geometry qed_spec.txt does not allow,
// as qemu refuses to open them (block/qed.c bdrv_qed_do_open).
func Inspect(r io.ReaderAt, size int64, limits disk.Limits) (disk.Facts, error) {
	facts, _, err := inspect(blockio.Source{R: r, Size: size}, limits)
	if err != nil {
		return facts, fmt.Errorf("qed: %w", err)
	}
	return facts, nil
}

func headerInfo(h header) disk.Info {
	// qemu-img info shows no dirty flag for a QED image that needs a
	// check, and no format specific information.
	return disk.Info{Format: "qed", VirtualSize: int64(h.imageSize), ClusterSize: int64(h.clusterSize)}
}

// inspect decodes and validates the header of the image in src.
func inspect(src blockio.Source, limits disk.Limits) (disk.Facts, header, error) {
	b, err := src.Read("the QED header", 0, headerBytes)
	if err != nil {
		return disk.Facts{}, header{}, err
	}
	if !bytes.Equal(b[:4], []byte("QED\x00")) {
		return disk.Facts{}, header{}, fmt.Errorf("%w: no QED magic", disk.ErrFormat)
	}
	h := parseHeader(b)
	if unknown := h.features &^ featKnown; unknown != 0 {
		return disk.Facts{}, h, fmt.Errorf("%w: unknown feature bits %#x are set", disk.ErrUnsupported, unknown)
	}
	if h.features&featBacking != 0 {
		name := fmt.Sprintf("(%d bytes at offset %#x)", h.backingSize, h.backingOffset)
		if h.backingSize <= 1023 {
			if nb, err := src.Read("QED backing file name", int64(h.backingOffset), int64(h.backingSize)); err == nil {
				name = disk.Quote(string(nb))
			}
		}
		return disk.Facts{}, h, fmt.Errorf("%w: the image is an overlay on the backing file %s: an image must not make us open other files", disk.ErrUnsafe, name)
	}
	if err := limits.CheckVirtualSize("the QED header", h.imageSize); err != nil {
		return disk.Facts{}, h, err
	}
	facts := disk.Facts{Info: headerInfo(h)}
	if h.features&featNeedCheck != 0 {
		facts.Notes = append(facts.Notes, "the image is marked as needing a consistency check (it was not closed cleanly); it is read as it is, as qemu reads it read-only")
	}
	if !validClusterSize(h.clusterSize) || !validTableSize(h.tableSize) {
		return facts, h, fmt.Errorf("%w: cluster size %d and table size %d out of range (a power of two from 4 KiB to 64 MiB, and 1 to 16 clusters)",
			disk.ErrFormat, h.clusterSize, h.tableSize)
	}
	if max := maxImageSize(h.clusterSize, h.tableSize); h.imageSize > max || h.imageSize%512 != 0 {
		return facts, h, fmt.Errorf("%w: image size %d is not a multiple of 512 or more than the %d bytes the tables map",
			disk.ErrFormat, h.imageSize, max)
	}
	if uint64(h.headerSize)*uint64(h.clusterSize) > 1<<32-1 {
		return facts, h, fmt.Errorf("%w: header size of %d clusters is too large", disk.ErrFormat, h.headerSize)
	}
	g := h.geometry()
	// qemu rounds the file size down to a whole cluster: a partial last
	// cluster holds nothing.
	fileSize := src.Size &^ (g.clusterSize - 1)
	if !g.tableOK(h.l1Offset, fileSize) {
		return facts, h, fmt.Errorf("%w: the L1 table at offset %#x (%d bytes) is not cluster aligned, overlaps the header or lies beyond the end of the file (%d bytes)",
			disk.ErrFormat, h.l1Offset, g.tableBytes, src.Size)
	}
	if err := limits.CheckTable("the L1 table", uint64(g.l1Entries(int64(h.imageSize))), 8); err != nil {
		return facts, h, err
	}
	return facts, h, nil
}
