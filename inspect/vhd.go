package inspect

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"unicode/utf16"

	"github.com/ucphhpc/gen-vm-image-go/disk"
)

// VHD (qemu: vpc), "Virtual Hard Disk Image Format Specification" 1.0:
// a 512-byte big-endian footer at the end of the file (and a copy at the
// start of dynamic disks), and for dynamic and differencing disks a
// 1024-byte dynamic header with the block allocation table's geometry.
const (
	vhdFooterSize    = 512
	vhdDynHeaderSize = 1024
	vhdFixed         = 2
	vhdDynamic       = 3
	vhdDifferencing  = 4
	vhdFixedOffset   = ^uint64(0) // dataOffset of a fixed disk
	vhdMaxBlockSize  = 256 << 20
)

// checkVPC checks every footer the file has (the copy at 0 and the one at
// the end can differ in a hostile file, and readers differ in which one they
// trust), then the dynamic header.
func checkVPC(src *source, p Policy, rep *Report) error {
	offsets := []int64{0}
	if src.size >= vhdFooterSize-1 {
		// The footer ends the file; old Virtual PC images wrote 511 bytes.
		offsets = append(offsets, src.size-vhdFooterSize, src.size-vhdFooterSize+1)
	}
	seen := map[int64]bool{}
	var first []byte
	var firstOff int64
	var virtualSize uint64
	var diskType uint32
	for _, off := range offsets {
		if off < 0 || seen[off] {
			continue
		}
		seen[off] = true
		b, err := src.read("VHD footer", off, min(vhdFooterSize, src.size-off))
		if err != nil {
			return err
		}
		if !bytes.HasPrefix(b, []byte("conectix")) {
			continue
		}
		if len(b) < vhdFooterSize {
			b = append(b, make([]byte, vhdFooterSize-len(b))...)
		}
		t, size, err := checkVHDFooter(src, b, off, p)
		if err != nil {
			return err
		}
		if first != nil && (t != diskType || size != virtualSize) {
			return refuse(disk.ErrUnsafe, "the footers at offset %#x (disk type %d, %d bytes) and at offset %#x (disk type %d, %d bytes) disagree: the file would read differently to different programs",
				firstOff, diskType, virtualSize, off, t, size)
		}
		first, firstOff, diskType, virtualSize = b, off, t, size
	}
	if first == nil {
		return refuse(disk.ErrFormat, "no VHD footer found")
	}
	name := map[uint32]string{vhdFixed: "fixed", vhdDynamic: "dynamic"}[diskType]
	rep.VirtualSize = int64(virtualSize)
	rep.Notes = append(rep.Notes, fmt.Sprintf("VHD %s disk, %d bytes virtual; it names no other file", name, virtualSize))
	return nil
}

// vhdChecksum is the one's complement of the byte sum with the checksum
// field (4 bytes at at) taken as zero.
func vhdChecksum(b []byte, at int) uint32 {
	var sum uint32
	for i, c := range b {
		if i < at || i >= at+4 {
			sum += uint32(c)
		}
	}
	return ^sum
}

func checkVHDFooter(src *source, f []byte, off int64, p Policy) (uint32, uint64, error) {
	be := binary.BigEndian
	if got, want := be.Uint32(f[64:]), vhdChecksum(f, 64); got != want {
		return 0, 0, refuse(disk.ErrFormat, "the footer at offset %#x has checksum %#08x, but its content sums to %#08x", off, got, want)
	}
	if v := be.Uint32(f[12:]); v>>16 != 1 {
		return 0, 0, refuse(disk.ErrUnsupported, "footer at offset %#x: format version %#x (1.x exists)", off, v)
	}
	dataOffset := be.Uint64(f[16:])
	currentSize := be.Uint64(f[48:])
	diskType := be.Uint32(f[60:])
	if err := checkSize("the VHD footer", currentSize, p); err != nil {
		return 0, 0, err
	}
	switch diskType {
	case vhdFixed:
		if dataOffset != vhdFixedOffset {
			return 0, 0, refuse(disk.ErrFormat, "a fixed disk's footer has data offset %#x (all ones expected)", dataOffset)
		}
		if currentSize > uint64(src.size) || uint64(src.size)-currentSize < vhdFooterSize-1 {
			return 0, 0, refuse(disk.ErrFormat, "a fixed disk of %d bytes does not fit in the file (%d bytes)", currentSize, src.size)
		}
		return diskType, currentSize, nil
	case vhdDynamic, vhdDifferencing:
		parent, err := checkVHDDynamicHeader(src, dataOffset, currentSize, p)
		if err != nil {
			return 0, 0, err
		}
		if diskType == vhdDifferencing {
			return 0, 0, refuse(disk.ErrUnsafe, "a differencing disk over the parent %s: it needs its parent to be read, and an image must not make us open other files; merge it on a trusted host first",
				parent)
		}
		return diskType, currentSize, nil
	default:
		return 0, 0, refuse(disk.ErrUnsupported, "disk type %d (2 fixed, 3 dynamic and 4 differencing exist)", diskType)
	}
}

// checkVHDDynamicHeader bounds the block allocation table and returns the
// parent's name (for messages about differencing disks).
func checkVHDDynamicHeader(src *source, off, virtualSize uint64, p Policy) (string, error) {
	if off%512 != 0 || off > uint64(src.size) {
		return "", refuse(disk.ErrFormat, "dynamic header offset %#x is not a sector inside the file (%d bytes)", off, src.size)
	}
	h, err := src.read("VHD dynamic header", int64(off), vhdDynHeaderSize)
	if err != nil {
		return "", err
	}
	be := binary.BigEndian
	if !bytes.HasPrefix(h, []byte("cxsparse")) {
		return "", refuse(disk.ErrFormat, "no dynamic header (cxsparse) at offset %#x", off)
	}
	if got, want := be.Uint32(h[36:]), vhdChecksum(h, 36); got != want {
		return "", refuse(disk.ErrFormat, "the dynamic header at offset %#x has checksum %#08x, but its content sums to %#08x", off, got, want)
	}
	tableOffset := be.Uint64(h[16:])
	entries := uint64(be.Uint32(h[28:]))
	blockSize := uint64(be.Uint32(h[32:]))
	if blockSize < 512 || blockSize > vhdMaxBlockSize || bits.OnesCount64(blockSize) != 1 {
		return "", refuse(disk.ErrFormat, "block size %d (a power of two from 512 bytes to 256 MiB is needed)", blockSize)
	}
	if err := checkTable("the block allocation table", entries, 4); err != nil {
		return "", err
	}
	if satMul(entries, blockSize) < virtualSize {
		return "", refuse(disk.ErrFormat, "the block allocation table of %d entries of %d bytes covers less than the virtual size of %d bytes",
			entries, blockSize, virtualSize)
	}
	if tableOffset%512 != 0 || tableOffset > uint64(src.size) || entries*4 > uint64(src.size)-tableOffset {
		return "", refuse(disk.ErrFormat, "the block allocation table (%d entries) at offset %#x runs past the end of the file (%d bytes)",
			entries, tableOffset, src.size)
	}
	// The parent's Unicode name (UTF-16 big-endian, 512 bytes at 64).
	var units []uint16
	for i := 64; i+1 < 64+512; i += 2 {
		u := be.Uint16(h[i:])
		if u == 0 {
			break
		}
		units = append(units, u)
	}
	parent := quote(string(utf16.Decode(units)))
	if len(units) == 0 {
		parent = "(name not recorded)"
	}
	return parent, nil
}
