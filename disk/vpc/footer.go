package vpc

import (
	"encoding/binary"
)

// VHD (qemu: vpc), "Virtual Hard Disk Image Format Specification" 1.0:
// a 512-byte big-endian footer at the end of the file (and a copy at the
// start of dynamic disks), and for dynamic and differencing disks a
// 1024-byte dynamic header with the block allocation table's geometry.
const (
	footerSize       = 512
	dynHeaderSize    = 1024
	diskFixed        = 2
	diskDynamic      = 3
	diskDifferencing = 4
	fixedOffset      = ^uint64(0) // dataOffset of a fixed disk
	maxBlockSize     = 256 << 20
	unallocated      = 0xffffffff // a BAT entry with no block

	// DefaultBlockSize is the block size of the dynamic disks we write, as
	// qemu-img and Hyper-V write them.
	DefaultBlockSize = 2 << 20

	// maxGeometrySectors is the largest CHS geometry, 65535 cylinders, 16
	// heads, 255 sectors (127 GiB): a disk with it is as large as its
	// footer's current size says (qemu's VHD_MAX_GEOMETRY).
	maxGeometrySectors = 65535 * 16 * 255
	// MaxVirtualSize is the largest disk qemu opens or creates: 2040 GiB
	// (qemu's VHD_MAX_SECTORS, 0xff000000 sectors). Beyond it a BAT of
	// 32-bit sector offsets can no longer address the blocks.
	MaxVirtualSize = int64(0xff000000) * 512

	// timestampBase is 2000-01-01T00:00:00Z, the origin of the footer's
	// timestamp, in Unix seconds.
	timestampBase = 946684800
)

// footer field offsets (VHD specification, "Hard Disk Footer Format").
const (
	offFeatures    = 8
	offVersion     = 12
	offDataOffset  = 16
	offTimestamp   = 24
	offCreatorApp  = 28
	offCreatorVer  = 32
	offCreatorOS   = 36
	offOrigSize    = 40
	offCurrentSize = 48
	offCylinders   = 56
	offHeads       = 58
	offSectors     = 59
	offDiskType    = 60
	offChecksum    = 64
	offUUID        = 68
)

// dynamic header field offsets ("Dynamic Disk Header Format").
const (
	offDynDataOffset  = 8
	offDynTableOffset = 16
	offDynVersion     = 24
	offDynMaxEntries  = 28
	offDynBlockSize   = 32
	offDynChecksum    = 36
)

// geometry is a disk's cylinders, heads and sectors per track.
type geometry struct {
	cylinders uint16
	heads     uint8
	sectors   uint8
}

func (g geometry) total() int64 { return int64(g.cylinders) * int64(g.heads) * int64(g.sectors) }

// chsFor is the geometry the VHD specification's appendix ("CHS
// Calculation") gives a disk of totalSectors sectors; its total is at most
// totalSectors (rounded down), qemu's calculate_geometry.
func chsFor(totalSectors int64) geometry {
	totalSectors = min(totalSectors, maxGeometrySectors)
	var heads, sectors int64
	var cylTimesHeads int64
	if totalSectors >= 65535*16*63 {
		sectors, heads = 255, 16
		cylTimesHeads = totalSectors / sectors
	} else {
		sectors = 17
		cylTimesHeads = totalSectors / sectors
		heads = max((cylTimesHeads+1023)/1024, 4)
		if cylTimesHeads >= heads*1024 || heads > 16 {
			sectors, heads = 31, 16
			cylTimesHeads = totalSectors / sectors
		}
		if cylTimesHeads >= heads*1024 {
			sectors, heads = 63, 16
			cylTimesHeads = totalSectors / sectors
		}
	}
	return geometry{cylinders: uint16(cylTimesHeads / heads), heads: uint8(heads), sectors: uint8(sectors)}
}

// sizedGeometry is the geometry and virtual size qemu-img create gives a
// disk asked to hold size bytes (a multiple of 512): the smallest geometry
// that holds size, whose total then is the virtual size; beyond what a
// geometry can say (127 GiB), the largest geometry and size itself. With
// forceSize the geometry is the largest and the size is kept.
func sizedGeometry(size int64, forceSize bool) (geometry, int64) {
	maxGeo := geometry{cylinders: 65535, heads: 16, sectors: 255}
	if forceSize {
		return maxGeo, size
	}
	want := min(int64(maxGeometrySectors), size/512)
	var g geometry
	for i := int64(0); want > g.total(); i++ {
		g = chsFor(want + i)
	}
	if g.total() == maxGeometrySectors {
		return g, size
	}
	return g, g.total() * 512
}

// footerInfo is what a footer says.
type footerInfo struct {
	diskType    uint32
	dataOffset  uint64
	currentSize uint64
	creatorApp  string
	geometry    geometry
}

func decodeFooter(f []byte) footerInfo {
	be := binary.BigEndian
	return footerInfo{
		diskType:    be.Uint32(f[offDiskType:]),
		dataOffset:  be.Uint64(f[offDataOffset:]),
		currentSize: be.Uint64(f[offCurrentSize:]),
		creatorApp:  string(f[offCreatorApp : offCreatorApp+4]),
		geometry:    geometry{cylinders: be.Uint16(f[offCylinders:]), heads: f[offHeads], sectors: f[offSectors]},
	}
}

// virtualSize is the size qemu gives the disk (block/vpc.c, vpc_open):
// Virtual PC sized disks by their CHS geometry, which is at most the
// footer's current size; Hyper-V, Disk2vhd, XenServer, XenConverter and
// qemu with force_size ("qem2") by the current size. A disk with the
// largest geometry is as large as its current size whoever made it.
func (f footerInfo) virtualSize() uint64 {
	switch f.creatorApp {
	case "win ", "qem2", "d2v ", "CTXS", "tap\x00":
		return f.currentSize &^ 511
	}
	if t := f.geometry.total(); t != maxGeometrySectors {
		return uint64(t) * 512
	}
	return f.currentSize &^ 511
}

// footerSpec is what the writer puts in a footer.
type footerSpec struct {
	diskType   uint32
	size       int64 // current and original size
	geometry   geometry
	creatorApp string
	timestamp  uint32
	uuid       [16]byte
}

// encode returns the 512-byte footer with its checksum.
func (s footerSpec) encode() []byte {
	be := binary.BigEndian
	f := make([]byte, footerSize)
	copy(f, "conectix")
	be.PutUint32(f[offFeatures:], 2) // reserved bit, always set
	be.PutUint32(f[offVersion:], 0x00010000)
	if s.diskType == diskFixed {
		be.PutUint64(f[offDataOffset:], fixedOffset)
	} else {
		be.PutUint64(f[offDataOffset:], footerSize)
	}
	be.PutUint32(f[offTimestamp:], s.timestamp)
	copy(f[offCreatorApp:offCreatorApp+4], s.creatorApp)
	be.PutUint32(f[offCreatorVer:], 0x00050003) // Virtual PC 2007, as qemu says
	copy(f[offCreatorOS:offCreatorOS+4], "Wi2k")
	be.PutUint64(f[offOrigSize:], uint64(s.size))
	be.PutUint64(f[offCurrentSize:], uint64(s.size))
	be.PutUint16(f[offCylinders:], s.geometry.cylinders)
	f[offHeads] = s.geometry.heads
	f[offSectors] = s.geometry.sectors
	be.PutUint32(f[offDiskType:], s.diskType)
	copy(f[offUUID:offUUID+16], s.uuid[:])
	be.PutUint32(f[offChecksum:], Checksum(f, offChecksum))
	return f
}

// encodeDynHeader returns the 1024-byte dynamic disk header.
func encodeDynHeader(tableOffset int64, entries uint32, blockSize uint32) []byte {
	be := binary.BigEndian
	h := make([]byte, dynHeaderSize)
	copy(h, "cxsparse")
	// The specification says 0xFFFFFFFF, but Microsoft's tools expect all
	// 64 bits set (as qemu writes it).
	be.PutUint64(h[offDynDataOffset:], ^uint64(0))
	be.PutUint64(h[offDynTableOffset:], uint64(tableOffset))
	be.PutUint32(h[offDynVersion:], 0x00010000)
	be.PutUint32(h[offDynMaxEntries:], entries)
	be.PutUint32(h[offDynBlockSize:], blockSize)
	be.PutUint32(h[offDynChecksum:], Checksum(h, offDynChecksum))
	return h
}

// bitmapSize is the size of a block's sector bitmap: a bit per sector,
// padded to a sector, as qemu reckons it (which makes it 0 for blocks
// under 4 KiB, that nobody writes).
func bitmapSize(blockSize int64) int64 {
	return (blockSize/(8*512) + 511) &^ 511
}
