// Package qcow2 reads, writes and checks qcow2 images, versions 2 and 3, as
// specified by qemu's docs/interop/qcow2.txt.
package qcow2

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/ucphhpc/gen-vm-image-go/disk"
)

// Magic is "QFI\xfb", the first four bytes of every qcow2 image.
const Magic = 0x514649fb

// qcow2.txt "Header": sizes of the fixed parts.
const (
	headerV2Length = 72
	headerV3Length = 104 // without the compression_type byte's padding: 104 + 8 with it
	// headerV3WithCompression is the length qemu writes (compression type byte + 7 padding).
	headerV3WithCompression = 112
)

// Limits. qemu refuses larger tables (block/qcow2.h QCOW_MAX_L1_SIZE,
// QCOW_MAX_REFTABLE_SIZE); so do we, before allocating anything.
const (
	MinClusterBits       = 9
	MaxClusterBits       = 21
	MaxL1Bytes           = 32 << 20
	MaxRefcountTableSize = 8 << 20
	MaxBackingNameLength = 1023
	MaxSnapshots         = 65536
	// MaxVirtualSize matches qemu's QCOW_MAX_... limit of 2^61 bytes (we never
	// need more, and it keeps every offset computation in int64).
	MaxVirtualSize = int64(1) << 61
)

// Incompatible feature bits (qcow2.txt "incompatible_features").
const (
	IncompatDirty         = 1 << 0
	IncompatCorrupt       = 1 << 1
	IncompatDataFile      = 1 << 2
	IncompatCompression   = 1 << 3
	IncompatExtendedL2    = 1 << 4
	IncompatKnown         = IncompatDirty | IncompatCorrupt | IncompatDataFile | IncompatCompression | IncompatExtendedL2
	CompatLazyRefcounts   = 1 << 0
	AutoclearBitmaps      = 1 << 0
	AutoclearRawDataFile  = 1 << 1
	CompressionDeflate    = 0
	CompressionZstd       = 1
	CryptNone             = 0
	CryptAES              = 1
	CryptLUKS             = 2
	DefaultClusterBits    = 16
	DefaultRefcountOrder  = 4
	extBackingFormat      = 0xe2792aca
	extFeatureNameTable   = 0x6803f857
	extBitmaps            = 0x23852875
	extFullDiskEncryption = 0x0537be77
	extDataFileName       = 0x44415441
)

// L1, L2 and refcount-table entry bits (qcow2.txt "Cluster mapping").
const (
	EntryCopied          = uint64(1) << 63
	EntryCompressed      = uint64(1) << 62
	EntryZero            = uint64(1) // standard L2 descriptor bit 0
	L1OffsetMask         = uint64(0x00fffffffffffe00)
	L2OffsetMask         = uint64(0x00fffffffffffe00)
	RefcountTableMask    = ^uint64(0x1ff) // refcount table entries: bits 9-63
	L1ReservedMask       = uint64(0x7f000000000001ff)
	L2StandardReserved   = uint64(0x3f000000000001fe)
	compressedSectorSize = 512
)

// compressedDescriptor decodes the L2 entries of compressed clusters for
// one cluster size (qcow2.txt "Compressed Clusters Descriptor"): with
// x = 62 - (cluster_bits - 8), bits 0..x-1 are the host offset of the
// compressed data and bits x..61 the number of 512-byte sectors it spans
// beyond the first.
type compressedDescriptor struct {
	sizeShift  uint
	sizeMask   uint64
	offsetMask uint64
}

func newCompressedDescriptor(clusterBits uint32) compressedDescriptor {
	shift := uint(62 - (clusterBits - 8))
	return compressedDescriptor{
		sizeShift:  shift,
		sizeMask:   uint64(1)<<(clusterBits-8) - 1,
		offsetMask: uint64(1)<<shift - 1,
	}
}

// decode returns the host offset of a compressed cluster's data and its
// length in bytes: up to the end of its last sector. The length may reach
// past the end of the file; the data in it may be shorter (trailing bytes
// are legal).
func (d compressedDescriptor) decode(entry uint64) (host, length uint64) {
	host = entry & d.offsetMask
	sectors := (entry>>d.sizeShift)&d.sizeMask + 1
	return host, sectors*compressedSectorSize - host%compressedSectorSize
}

// Header is the decoded qcow2 header plus the extensions we understand.
type Header struct {
	Version               uint32
	BackingFileOffset     uint64
	BackingFileSize       uint32
	ClusterBits           uint32
	Size                  uint64 // virtual size in bytes
	CryptMethod           uint32
	L1Size                uint32 // entries
	L1TableOffset         uint64
	RefcountTableOffset   uint64
	RefcountTableClusters uint32
	NbSnapshots           uint32
	SnapshotsOffset       uint64
	// Version 3 fields; version 2 images get the implied values.
	IncompatibleFeatures uint64
	CompatibleFeatures   uint64
	AutoclearFeatures    uint64
	RefcountOrder        uint32
	HeaderLength         uint32
	CompressionType      uint8

	// From the header extensions and the backing file name.
	BackingFile     string
	BackingFormat   string
	DataFile        string
	HasFDEExtension bool
	HasBitmaps      bool
	// Extensions are every header extension, in the order of the file.
	Extensions []Extension
}

// Extension is one header extension (qcow2.txt "Header extensions").
type Extension struct {
	Type uint32
	Data []byte // without the padding to 8 bytes
}

// Extension returns the data of the first header extension of type typ,
// or nil when there is none.
func (h *Header) Extension(typ uint32) []byte {
	for _, e := range h.Extensions {
		if e.Type == typ {
			return e.Data
		}
	}
	return nil
}

// ClusterSize returns 1 << ClusterBits.
func (h *Header) ClusterSize() int64 { return int64(1) << h.ClusterBits }

// ExtendedL2 reports whether L2 entries are 128 bits with subcluster bitmaps.
func (h *Header) ExtendedL2() bool { return h.IncompatibleFeatures&IncompatExtendedL2 != 0 }

// L2EntrySize is 8, or 16 with extended L2.
func (h *Header) L2EntrySize() int64 {
	if h.ExtendedL2() {
		return 16
	}
	return 8
}

// L2Entries is the number of entries in one L2 table (one cluster).
func (h *Header) L2Entries() int64 { return h.ClusterSize() / h.L2EntrySize() }

// Compat is "0.10" for version 2 and "1.1" for version 3, as qemu-img says.
func (h *Header) Compat() string {
	if h.Version == 2 {
		return "0.10"
	}
	return "1.1"
}

// CompressionName is "zlib" or "zstd", as qemu-img info spells them.
func (h *Header) CompressionName() string {
	if h.CompressionType == CompressionZstd {
		return "zstd"
	}
	return "zlib"
}

func formatErr(format string, args ...any) error {
	return fmt.Errorf("qcow2: %w: "+format, append([]any{disk.ErrFormat}, args...)...)
}

func unsupportedErr(format string, args ...any) error {
	return fmt.Errorf("qcow2: %w: "+format, append([]any{disk.ErrUnsupported}, args...)...)
}

func unsafeErr(format string, args ...any) error {
	return fmt.Errorf("qcow2: %w: "+format, append([]any{disk.ErrUnsafe}, args...)...)
}

// ParseHeader decodes and validates the header found in the first cluster
// of an image (buf should hold at least the first cluster, or the whole file
// if it is shorter; more is ignored). fileSize bounds every offset. It checks
// geometry and offsets; it does not refuse features: Open and Inspect do
// (see Header.refusal).
func ParseHeader(buf []byte, fileSize int64) (*Header, error) {
	if len(buf) < headerV2Length {
		return nil, formatErr("file is %d bytes, shorter than a qcow2 header", len(buf))
	}
	be := binary.BigEndian
	if be.Uint32(buf[0:]) != Magic {
		return nil, formatErr("bad magic %#x", be.Uint32(buf[0:]))
	}
	h := &Header{
		Version:               be.Uint32(buf[4:]),
		BackingFileOffset:     be.Uint64(buf[8:]),
		BackingFileSize:       be.Uint32(buf[16:]),
		ClusterBits:           be.Uint32(buf[20:]),
		Size:                  be.Uint64(buf[24:]),
		CryptMethod:           be.Uint32(buf[32:]),
		L1Size:                be.Uint32(buf[36:]),
		L1TableOffset:         be.Uint64(buf[40:]),
		RefcountTableOffset:   be.Uint64(buf[48:]),
		RefcountTableClusters: be.Uint32(buf[56:]),
		NbSnapshots:           be.Uint32(buf[60:]),
		SnapshotsOffset:       be.Uint64(buf[64:]),
		RefcountOrder:         DefaultRefcountOrder,
		HeaderLength:          headerV2Length,
	}
	switch h.Version {
	case 2:
	case 3:
		if len(buf) < headerV3Length {
			return nil, formatErr("version 3 header truncated (%d bytes)", len(buf))
		}
		h.IncompatibleFeatures = be.Uint64(buf[72:])
		h.CompatibleFeatures = be.Uint64(buf[80:])
		h.AutoclearFeatures = be.Uint64(buf[88:])
		h.RefcountOrder = be.Uint32(buf[96:])
		h.HeaderLength = be.Uint32(buf[100:])
		if h.HeaderLength < headerV3Length || h.HeaderLength%8 != 0 {
			return nil, formatErr("header_length %d invalid (must be >= 104 and a multiple of 8)", h.HeaderLength)
		}
		if h.HeaderLength > 104 {
			if len(buf) < 105 {
				return nil, formatErr("header truncated")
			}
			h.CompressionType = buf[104]
		}
	default:
		return nil, unsupportedErr("version %d (only 2 and 3 exist)", h.Version)
	}
	if h.ClusterBits < MinClusterBits || h.ClusterBits > MaxClusterBits {
		return nil, formatErr("cluster_bits %d out of range %d..%d", h.ClusterBits, MinClusterBits, MaxClusterBits)
	}
	cs := h.ClusterSize()
	if int64(h.HeaderLength) > cs {
		return nil, formatErr("header_length %d exceeds the cluster size %d", h.HeaderLength, cs)
	}
	if h.RefcountOrder > 6 {
		return nil, formatErr("refcount_order %d out of range 0..6", h.RefcountOrder)
	}
	if h.Size > uint64(MaxVirtualSize) {
		return nil, formatErr("virtual size %d exceeds the limit of %d bytes", h.Size, MaxVirtualSize)
	}
	if h.ExtendedL2() && h.ClusterBits < 14 {
		return nil, formatErr("extended L2 entries need clusters of at least 16 KiB, have %d bytes", cs)
	}
	if h.CompressionType > CompressionZstd {
		return nil, unsupportedErr("compression type %d", h.CompressionType)
	}
	if h.CompressionType != CompressionDeflate && h.IncompatibleFeatures&IncompatCompression == 0 {
		return nil, formatErr("compression type %d without the compression-type feature bit", h.CompressionType)
	}
	// L1 geometry: the L1 table must cover the virtual size and fit qemu's cap.
	if int64(h.L1Size)*8 > MaxL1Bytes {
		return nil, formatErr("L1 table of %d entries exceeds %d bytes", h.L1Size, MaxL1Bytes)
	}
	perL2 := h.L2Entries() * cs // bytes of virtual disk per L1 entry
	need := (int64(h.Size) + perL2 - 1) / perL2
	if int64(h.L1Size) < need {
		return nil, formatErr("L1 table of %d entries is too small for a virtual size of %d bytes (needs %d)", h.L1Size, h.Size, need)
	}
	if err := checkTable("L1 table", h.L1TableOffset, int64(h.L1Size)*8, cs, fileSize); err != nil && h.L1Size > 0 {
		return nil, err
	}
	if int64(h.RefcountTableClusters)*cs > MaxRefcountTableSize {
		return nil, formatErr("refcount table of %d clusters exceeds %d bytes", h.RefcountTableClusters, MaxRefcountTableSize)
	}
	if err := checkTable("refcount table", h.RefcountTableOffset, int64(h.RefcountTableClusters)*cs, cs, fileSize); err != nil {
		return nil, err
	}
	if h.NbSnapshots > MaxSnapshots {
		return nil, formatErr("%d snapshots exceed the limit of %d", h.NbSnapshots, MaxSnapshots)
	}
	if h.NbSnapshots > 0 {
		if err := checkTable("snapshot table", h.SnapshotsOffset, 0, cs, fileSize); err != nil {
			return nil, err
		}
	}
	if err := h.parseExtensions(buf, cs); err != nil {
		return nil, err
	}
	if h.BackingFileOffset != 0 {
		if h.BackingFileSize > MaxBackingNameLength {
			return nil, formatErr("backing file name of %d bytes exceeds %d", h.BackingFileSize, MaxBackingNameLength)
		}
		// Compared without adding first: a hostile offset near 2^64 must
		// not wrap around.
		limit := uint64(min(cs, int64(len(buf))))
		if h.BackingFileOffset > limit || uint64(h.BackingFileSize) > limit-h.BackingFileOffset {
			return nil, formatErr("backing file name at %#x+%d lies outside the first cluster", h.BackingFileOffset, h.BackingFileSize)
		}
		h.BackingFile = string(buf[h.BackingFileOffset : h.BackingFileOffset+uint64(h.BackingFileSize)])
	}
	return h, nil
}

// checkTable validates that a table at off of n bytes is cluster aligned and
// starts inside the file. (The end may lie beyond EOF in a truncated file;
// readers fail when they read it.)
func checkTable(what string, off uint64, n, clusterSize, fileSize int64) error {
	if off%uint64(clusterSize) != 0 {
		return formatErr("%s offset %#x is not cluster aligned", what, off)
	}
	if off > uint64(MaxVirtualSize) || int64(off)+n > MaxVirtualSize {
		return formatErr("%s offset %#x out of range", what, off)
	}
	if fileSize > 0 && int64(off) >= fileSize {
		return formatErr("%s offset %#x lies beyond the end of the file (%d bytes)", what, off, fileSize)
	}
	return nil
}

// parseExtensions walks the header extensions of a version 3 image
// (qcow2.txt "Header extensions"); version 2 images may have them too. They
// end at a zero type, at the backing file name or at the end of the first
// cluster, whichever comes first. Their data is copied: the header outlives
// the buffer of the header cluster.
func (h *Header) parseExtensions(buf []byte, clusterSize int64) error {
	be := binary.BigEndian
	off := int64(h.HeaderLength)
	limit := min(int64(len(buf)), clusterSize)
	if h.BackingFileOffset != 0 && h.BackingFileOffset < uint64(limit) {
		limit = int64(h.BackingFileOffset)
	}
	for off+8 <= limit {
		typ := be.Uint32(buf[off:])
		length := int64(be.Uint32(buf[off+4:]))
		if typ == 0 {
			return nil
		}
		data := off + 8
		if length > limit-data {
			return formatErr("header extension %#x at %#x: length %d overruns the header cluster", typ, off, length)
		}
		payload := bytes.Clone(buf[data : data+length])
		h.Extensions = append(h.Extensions, Extension{Type: typ, Data: payload})
		switch typ {
		case extBackingFormat:
			h.BackingFormat = string(payload)
		case extDataFileName:
			h.DataFile = string(payload)
		case extFullDiskEncryption:
			h.HasFDEExtension = true
		case extBitmaps:
			h.HasBitmaps = true
		}
		off = data + (length+7)&^7
	}
	return nil
}

// Marshal encodes a version 3 header of qemu's 112-byte form (with the
// compression-type byte), followed by the end-of-extensions marker.
// Writers use it; it encodes no extensions and no backing file.
func (h *Header) Marshal() []byte {
	buf := make([]byte, headerV3WithCompression+8)
	be := binary.BigEndian
	be.PutUint32(buf[0:], Magic)
	be.PutUint32(buf[4:], 3)
	be.PutUint32(buf[20:], h.ClusterBits)
	be.PutUint64(buf[24:], h.Size)
	be.PutUint32(buf[32:], h.CryptMethod)
	be.PutUint32(buf[36:], h.L1Size)
	be.PutUint64(buf[40:], h.L1TableOffset)
	be.PutUint64(buf[48:], h.RefcountTableOffset)
	be.PutUint32(buf[56:], h.RefcountTableClusters)
	be.PutUint32(buf[60:], h.NbSnapshots)
	be.PutUint64(buf[64:], h.SnapshotsOffset)
	be.PutUint64(buf[72:], h.IncompatibleFeatures)
	be.PutUint64(buf[80:], h.CompatibleFeatures)
	be.PutUint64(buf[88:], h.AutoclearFeatures)
	be.PutUint32(buf[96:], h.RefcountOrder)
	be.PutUint32(buf[100:], headerV3WithCompression)
	buf[104] = h.CompressionType
	// buf[112:120] stays zero: the end-of-extensions marker.
	return buf
}
