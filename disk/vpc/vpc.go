// Package vpc reads and writes the VHD format of Virtual PC, Hyper-V and
// Azure (qemu calls it vpc): fixed and dynamic disks. Differencing disks
// are refused: they need their parent, another file.
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

// Inspect checks every footer the file has (the copy at 0 and the one at
// the end can differ in a hostile file, and readers differ in which one
// they trust), then the dynamic header.
func Inspect(r io.ReaderAt, size int64, limits disk.Limits) (disk.Facts, error) {
	var facts disk.Facts
	l, err := parse(blockio.Source{R: r, Size: size}, limits.WithDefaults())
	if l.footer.diskType != 0 {
		facts.Info = l.info()
	}
	if err != nil {
		return facts, fmt.Errorf("vpc: %w", err)
	}
	name := map[uint32]string{diskFixed: "fixed", diskDynamic: "dynamic"}[l.footer.diskType]
	facts.Notes = append(facts.Notes, fmt.Sprintf("VHD %s disk made by %q, %d bytes virtual; it names no other file", name, l.footer.creatorApp, l.virtualSize))
	return facts, nil
}

// layout is what the footer and the dynamic header of a checked image
// say.
type layout struct {
	footer      footerInfo
	footerOff   int64 // the footer read: the copy at 0 when there is one, as qemu reads
	virtualSize int64
	dataEnd     int64 // fixed disks: where the data ends (the footer's offset at the end)
	// Dynamic disks.
	tableOffset int64
	entries     int64 // BAT entries
	blockSize   int64
}

// info describes the image as qemu-img info does: the block size is the
// cluster size of dynamic disks only.
func (l layout) info() disk.Info {
	info := disk.Info{Format: "vpc", VirtualSize: l.virtualSize}
	if l.footer.diskType != diskFixed {
		info.ClusterSize = l.blockSize
	}
	return info
}

// parse reads and checks the footers and the dynamic header. A footer
// found but refused still leaves l.footer set, for Inspect's facts.
func parse(src blockio.Source, limits disk.Limits) (l layout, err error) {
	offsets := []int64{0}
	if src.Size >= footerSize-1 {
		// The footer ends the file; old Virtual PC images wrote 511 bytes.
		offsets = append(offsets, src.Size-footerSize, src.Size-footerSize+1)
	}
	seen := map[int64]bool{}
	found := 0
	for _, off := range offsets {
		if off < 0 || seen[off] {
			continue
		}
		seen[off] = true
		b, err := src.Read("VHD footer", off, min(footerSize, src.Size-off))
		if err != nil {
			return l, err
		}
		if !bytes.HasPrefix(b, []byte("conectix")) {
			continue
		}
		if len(b) < footerSize {
			b = append(b, make([]byte, footerSize-len(b))...)
		}
		f, vsize, err := checkFooter(b, off, limits)
		if err != nil {
			return l, err
		}
		if found == 0 {
			l.footer, l.footerOff, l.virtualSize = f, off, vsize
		} else if f != l.footer {
			// Readers differ in which footer they trust and in how they
			// size the disk (current size or geometry): any difference
			// in what sizes and places the disk is a disagreement.
			return l, refuse(disk.ErrUnsafe, "the footers at offset %#x (disk type %d, %d bytes, %q) and at offset %#x (disk type %d, %d bytes, %q) disagree: the file would read differently to different programs",
				l.footerOff, l.footer.diskType, l.footer.currentSize, l.footer.creatorApp, off, f.diskType, f.currentSize, f.creatorApp)
		}
		if off != 0 && l.footer.diskType == diskFixed {
			l.dataEnd = off
		}
		found++
	}
	if found == 0 {
		return l, refuse(disk.ErrFormat, "no VHD footer found")
	}
	switch l.footer.diskType {
	case diskFixed:
		if l.footerOff == 0 {
			return l, refuse(disk.ErrFormat, "a fixed disk's footer at offset 0: only dynamic disks start with one")
		}
		if l.virtualSize > l.dataEnd {
			return l, refuse(disk.ErrFormat, "a fixed disk of %d bytes does not fit before its footer at offset %#x", l.virtualSize, l.dataEnd)
		}
	case diskDynamic, diskDifferencing:
		if l.footerOff != 0 {
			return l, refuse(disk.ErrFormat, "a dynamic disk without the copy of its footer at offset 0 (truncated or damaged)")
		}
		parent, err := l.checkDynamicHeader(src, limits)
		if err != nil {
			return l, err
		}
		if l.footer.diskType == diskDifferencing {
			return l, refuse(disk.ErrUnsafe, "a differencing disk over the parent %s: it needs its parent to be read, and an image must not make us open other files; merge it on a trusted host first",
				parent)
		}
	default:
		return l, refuse(disk.ErrUnsupported, "disk type %d (2 fixed, 3 dynamic and 4 differencing exist)", l.footer.diskType)
	}
	return l, nil
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

// checkFooter checks one footer and returns what it says and the virtual
// size it gives the disk.
func checkFooter(b []byte, off int64, limits disk.Limits) (footerInfo, int64, error) {
	be := binary.BigEndian
	if got, want := be.Uint32(b[offChecksum:]), Checksum(b, offChecksum); got != want {
		return footerInfo{}, 0, refuse(disk.ErrFormat, "the footer at offset %#x has checksum %#08x, but its content sums to %#08x", off, got, want)
	}
	if v := be.Uint32(b[offVersion:]); v>>16 != 1 {
		return footerInfo{}, 0, refuse(disk.ErrUnsupported, "footer at offset %#x: format version %#x (1.x exists)", off, v)
	}
	f := decodeFooter(b)
	if err := limits.CheckVirtualSize("the VHD footer", f.currentSize); err != nil {
		return f, 0, err
	}
	vsize := f.virtualSize()
	if vsize > uint64(MaxVirtualSize) {
		return f, 0, refuse(disk.ErrUnsupported, "virtual size %d bytes: VHD disks end at 2040 GiB (%d bytes)", vsize, MaxVirtualSize)
	}
	switch f.diskType {
	case diskFixed:
		if f.dataOffset != fixedOffset {
			return f, 0, refuse(disk.ErrFormat, "a fixed disk's footer has data offset %#x (all ones expected)", f.dataOffset)
		}
	case diskDynamic, diskDifferencing:
		if f.dataOffset%512 != 0 {
			return f, 0, refuse(disk.ErrFormat, "dynamic header offset %#x is not a multiple of 512", f.dataOffset)
		}
	}
	return f, int64(vsize), nil
}

// checkDynamicHeader bounds the block allocation table and returns the
// parent's name (for messages about differencing disks).
func (l *layout) checkDynamicHeader(src blockio.Source, limits disk.Limits) (parent string, err error) {
	off := l.footer.dataOffset
	if off > uint64(src.Size) {
		return "", refuse(disk.ErrFormat, "dynamic header offset %#x lies beyond the end of the file (%d bytes)", off, src.Size)
	}
	h, err := src.Read("VHD dynamic header", int64(off), dynHeaderSize)
	if err != nil {
		return "", err
	}
	be := binary.BigEndian
	if !bytes.HasPrefix(h, []byte("cxsparse")) {
		return "", refuse(disk.ErrFormat, "no dynamic header (cxsparse) at offset %#x", off)
	}
	if got, want := be.Uint32(h[offDynChecksum:]), Checksum(h, offDynChecksum); got != want {
		return "", refuse(disk.ErrFormat, "the dynamic header at offset %#x has checksum %#08x, but its content sums to %#08x", off, got, want)
	}
	tableOffset := be.Uint64(h[offDynTableOffset:])
	entries := uint64(be.Uint32(h[offDynMaxEntries:]))
	blockSize := uint64(be.Uint32(h[offDynBlockSize:]))
	if blockSize < 512 || blockSize > maxBlockSize || bits.OnesCount64(blockSize) != 1 {
		return "", refuse(disk.ErrFormat, "block size %d (a power of two from 512 bytes to 256 MiB is needed)", blockSize)
	}
	if err := limits.CheckTable("the block allocation table", entries, 4); err != nil {
		return "", err
	}
	vsize := uint64(l.virtualSize)
	if entries < (vsize+blockSize-1)/blockSize {
		return "", refuse(disk.ErrFormat, "the block allocation table of %d entries of %d bytes covers less than the virtual size of %d bytes",
			entries, blockSize, vsize)
	}
	if tableOffset%512 != 0 || tableOffset > uint64(src.Size) || entries*4 > uint64(src.Size)-tableOffset {
		return "", refuse(disk.ErrFormat, "the block allocation table (%d entries) at offset %#x runs past the end of the file (%d bytes)",
			entries, tableOffset, src.Size)
	}
	l.tableOffset, l.entries, l.blockSize = int64(tableOffset), int64(entries), int64(blockSize)
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
	return parent, nil
}
