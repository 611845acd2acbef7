// Package vpc knows the VHD format of Virtual PC and Hyper-V (qemu calls
// it vpc): it recognises and inspects VHD images. It cannot read or write
// them yet.
package vpc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"unicode/utf16"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

func init() {
	disk.Register(disk.Format{Name: "vpc", Sniff: Sniff, Inspect: Inspect, Extensions: []string{".vhd", ".vpc"}})
}

// Sniff recognises the footer's cookie "conectix": a dynamic VHD starts
// with a copy of its footer; a fixed one has it only in the last 512 bytes
// (511 in old Virtual PC images).
func Sniff(r io.ReaderAt, size int64) bool {
	cookie := []byte("conectix")
	if bytes.Equal(blockio.Peek(r, 0, len(cookie)), cookie) {
		return true
	}
	for _, back := range []int64{footerSize, footerSize - 1} {
		if size >= back && bytes.Equal(blockio.Peek(r, size-back, len(cookie)), cookie) {
			return true
		}
	}
	return false
}

// refuse builds a refusal of one class; Inspect names the format.
func refuse(class error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{class}, args...)...)
}

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
)

// Inspect checks every footer the file has (the copy at 0 and the one at
// the end can differ in a hostile file, and readers differ in which one
// they trust), then the dynamic header.
func Inspect(r io.ReaderAt, size int64, limits disk.Limits) (disk.Facts, error) {
	var facts disk.Facts
	if err := inspect(blockio.Source{R: r, Size: size}, limits.WithDefaults(), &facts); err != nil {
		return facts, fmt.Errorf("vpc: %w", err)
	}
	return facts, nil
}

func inspect(src blockio.Source, limits disk.Limits, facts *disk.Facts) error {
	offsets := []int64{0}
	if src.Size >= footerSize-1 {
		// The footer ends the file; old Virtual PC images wrote 511 bytes.
		offsets = append(offsets, src.Size-footerSize, src.Size-footerSize+1)
	}
	seen := map[int64]bool{}
	var first *footer
	var firstOff int64
	for _, off := range offsets {
		if off < 0 || seen[off] {
			continue
		}
		seen[off] = true
		b, err := src.Read("VHD footer", off, min(footerSize, src.Size-off))
		if err != nil {
			return err
		}
		if !bytes.HasPrefix(b, []byte("conectix")) {
			continue
		}
		if len(b) < footerSize {
			b = append(b, make([]byte, footerSize-len(b))...)
		}
		f, err := checkFooter(src, b, off, limits)
		if err != nil {
			return err
		}
		if first != nil && (f.diskType != first.diskType || f.size != first.size) {
			return refuse(disk.ErrUnsafe, "the footers at offset %#x (disk type %d, %d bytes) and at offset %#x (disk type %d, %d bytes) disagree: the file would read differently to different programs",
				firstOff, first.diskType, first.size, off, f.diskType, f.size)
		}
		if first == nil {
			first, firstOff = &f, off
		}
	}
	if first == nil {
		return refuse(disk.ErrFormat, "no VHD footer found")
	}
	facts.Info = disk.Info{Format: "vpc", VirtualSize: int64(first.size), ClusterSize: int64(first.blockSize)}
	name := map[uint32]string{diskFixed: "fixed", diskDynamic: "dynamic"}[first.diskType]
	facts.Notes = append(facts.Notes, fmt.Sprintf("VHD %s disk, %d bytes virtual; it names no other file", name, first.size))
	return nil
}

// footer is what a checked footer (and the dynamic header it points at)
// declares.
type footer struct {
	diskType  uint32
	size      uint64 // current size, bytes
	blockSize uint64 // dynamic disks: the block size; 0 for fixed disks
}

// Checksum is the one's complement of the byte sum with the checksum
// field (4 bytes at at) taken as zero.
func Checksum(b []byte, at int) uint32 {
	var sum uint32
	for i, c := range b {
		if i < at || i >= at+4 {
			sum += uint32(c)
		}
	}
	return ^sum
}

func checkFooter(src blockio.Source, f []byte, off int64, limits disk.Limits) (footer, error) {
	be := binary.BigEndian
	if got, want := be.Uint32(f[64:]), Checksum(f, 64); got != want {
		return footer{}, refuse(disk.ErrFormat, "the footer at offset %#x has checksum %#08x, but its content sums to %#08x", off, got, want)
	}
	if v := be.Uint32(f[12:]); v>>16 != 1 {
		return footer{}, refuse(disk.ErrUnsupported, "footer at offset %#x: format version %#x (1.x exists)", off, v)
	}
	dataOffset := be.Uint64(f[16:])
	ft := footer{diskType: be.Uint32(f[60:]), size: be.Uint64(f[48:])}
	if err := limits.CheckVirtualSize("the VHD footer", ft.size); err != nil {
		return footer{}, err
	}
	switch ft.diskType {
	case diskFixed:
		if dataOffset != fixedOffset {
			return footer{}, refuse(disk.ErrFormat, "a fixed disk's footer has data offset %#x (all ones expected)", dataOffset)
		}
		if ft.size > uint64(src.Size) || uint64(src.Size)-ft.size < footerSize-1 {
			return footer{}, refuse(disk.ErrFormat, "a fixed disk of %d bytes does not fit in the file (%d bytes)", ft.size, src.Size)
		}
		return ft, nil
	case diskDynamic, diskDifferencing:
		parent, blockSize, err := checkDynamicHeader(src, dataOffset, ft.size, limits)
		if err != nil {
			return footer{}, err
		}
		if ft.diskType == diskDifferencing {
			return footer{}, refuse(disk.ErrUnsafe, "a differencing disk over the parent %s: it needs its parent to be read, and an image must not make us open other files; merge it on a trusted host first",
				parent)
		}
		ft.blockSize = blockSize
		return ft, nil
	default:
		return footer{}, refuse(disk.ErrUnsupported, "disk type %d (2 fixed, 3 dynamic and 4 differencing exist)", ft.diskType)
	}
}

// checkDynamicHeader bounds the block allocation table and returns the
// parent's name (for messages about differencing disks) and the block size.
func checkDynamicHeader(src blockio.Source, off, virtualSize uint64, limits disk.Limits) (parent string, blockSize uint64, err error) {
	if off%512 != 0 || off > uint64(src.Size) {
		return "", 0, refuse(disk.ErrFormat, "dynamic header offset %#x is not a sector inside the file (%d bytes)", off, src.Size)
	}
	h, err := src.Read("VHD dynamic header", int64(off), dynHeaderSize)
	if err != nil {
		return "", 0, err
	}
	be := binary.BigEndian
	if !bytes.HasPrefix(h, []byte("cxsparse")) {
		return "", 0, refuse(disk.ErrFormat, "no dynamic header (cxsparse) at offset %#x", off)
	}
	if got, want := be.Uint32(h[36:]), Checksum(h, 36); got != want {
		return "", 0, refuse(disk.ErrFormat, "the dynamic header at offset %#x has checksum %#08x, but its content sums to %#08x", off, got, want)
	}
	tableOffset := be.Uint64(h[16:])
	entries := uint64(be.Uint32(h[28:]))
	blockSize = uint64(be.Uint32(h[32:]))
	if blockSize < 512 || blockSize > maxBlockSize || bits.OnesCount64(blockSize) != 1 {
		return "", 0, refuse(disk.ErrFormat, "block size %d (a power of two from 512 bytes to 256 MiB is needed)", blockSize)
	}
	if err := limits.CheckTable("the block allocation table", entries, 4); err != nil {
		return "", 0, err
	}
	if entries < (virtualSize+blockSize-1)/blockSize {
		return "", 0, refuse(disk.ErrFormat, "the block allocation table of %d entries of %d bytes covers less than the virtual size of %d bytes",
			entries, blockSize, virtualSize)
	}
	if tableOffset%512 != 0 || tableOffset > uint64(src.Size) || entries*4 > uint64(src.Size)-tableOffset {
		return "", 0, refuse(disk.ErrFormat, "the block allocation table (%d entries) at offset %#x runs past the end of the file (%d bytes)",
			entries, tableOffset, src.Size)
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
	parent = disk.Quote(string(utf16.Decode(units)))
	if len(units) == 0 {
		parent = "(name not recorded)"
	}
	return parent, blockSize, nil
}
