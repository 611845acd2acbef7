package vhdx

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// Payload and sector bitmap block states ([MS-VHDX] 2.5.1), in bits 0-2 of
// a BAT entry; the file offset in MiB is in bits 20-63.
const (
	stateNotPresent           = 0
	stateUndefined            = 1
	stateZero                 = 2
	stateUnmapped             = 3
	stateUnmappedV095         = 5 // an early draft's unmapped, which qemu also reads as zeros
	stateFullyPresent         = 6
	statePartlyPresent        = 7
	stateBitmapPresent        = 6
	batStateMask              = 7
	batOffsetMask      uint64 = ^uint64(mib - 1)
)

// rdImage is a VHDX image opened for reading. The BAT is held in memory
// (bounded by the table limit); it is immutable, so reads may run
// concurrently.
type rdImage struct {
	src        blockio.Source
	info       disk.Info
	size       int64
	blockSize  int64
	sector     int64 // logical sector size
	chunkRatio int64
	blocks     []uint64 // payload BAT entries
	bitmaps    []uint64 // sector bitmap BAT entries, one per chunk
}

// Open opens the VHDX image held in the size bytes of r for reading. A
// pending log is replayed in memory; differencing disks are refused
// (disk.ErrUnsafe), and so is a BAT entry that points outside the file or
// into the image's own structures (disk.ErrFormat).
func Open(r io.ReaderAt, size int64, _ disk.OpenOptions) (disk.Image, error) {
	im, err := open(blockio.Source{R: r, Size: size})
	if err != nil {
		return nil, fmt.Errorf("vhdx: %w", err)
	}
	return im, nil
}

func open(src blockio.Source) (*rdImage, error) {
	l, err := load(src, disk.Limits{}.WithDefaults(), nil)
	if err != nil {
		return nil, err
	}
	im := &rdImage{
		src:        l.src,
		size:       int64(l.md.virtualSize),
		blockSize:  int64(l.md.blockSize),
		sector:     int64(l.md.logicalSector),
		chunkRatio: l.chunkRatio,
		info:       disk.Info{Format: "vhdx", VirtualSize: int64(l.md.virtualSize), ClusterSize: int64(l.md.blockSize)},
	}
	if err := im.loadBAT(l); err != nil {
		return nil, err
	}
	return im, nil
}

// loadBAT reads the BAT and refuses an image whose entries are not all
// sound.
func (im *rdImage) loadBAT(l *layout) error {
	var err error
	if im.blocks, im.bitmaps, err = readBAT(l); err != nil {
		return err
	}
	if problems, _ := batProblems(l, im.blocks, im.bitmaps, 1); len(problems) > 0 {
		return refuse(disk.ErrFormat, "%s", problems[0])
	}
	return nil
}

// readBAT reads the BAT in pieces, splitting payload from sector bitmap
// entries.
func readBAT(l *layout) (blocks, bitmaps []uint64, err error) {
	le := binary.LittleEndian
	blocks = make([]uint64, 0, l.dataBlocks)
	bitmaps = make([]uint64, 0, l.dataBlocks/l.chunkRatio+1)
	const piece = 1 << 20
	for done := int64(0); done < l.batEntries; {
		n := min(l.batEntries-done, piece/8)
		b, err := l.src.Read("VHDX BAT", l.bat.offset+done*8, n*8)
		if err != nil {
			return nil, nil, err
		}
		for i := range n {
			e := le.Uint64(b[8*i:])
			if (done+i)%(l.chunkRatio+1) == l.chunkRatio {
				bitmaps = append(bitmaps, e)
			} else {
				blocks = append(blocks, e)
			}
		}
		done += n
	}
	return blocks, bitmaps, nil
}

// batProblems checks every BAT entry against the file and the layout, and
// returns how many problems it found (it stops at stopAt) and the first
// few: unknown states, blocks outside the file or over the image's
// structures, blocks that share space, partially present blocks without a
// sector bitmap.
func batProblems(l *layout, blocks, bitmaps []uint64, stopAt int) (problems []string, count int) {
	add := func(format string, args ...any) bool {
		if count++; len(problems) < maxProblems {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
		return count >= stopAt
	}
	reserved := l.reserved()
	type used struct {
		off, len int64
		what     string
	}
	var inUse []used
	for chunk, e := range bitmaps {
		switch e & batStateMask {
		case stateNotPresent:
		case stateBitmapPresent:
			off := e & batOffsetMask
			if err := checkBlock(l.src.Size, reserved, off, mib); err != nil {
				if add("sector bitmap block %d: %v", chunk, err) {
					return problems, count
				}
				continue
			}
			inUse = append(inUse, used{int64(off), mib, fmt.Sprintf("sector bitmap block %d", chunk)})
		default:
			if add("sector bitmap block %d has the state %d", chunk, e&batStateMask) {
				return problems, count
			}
		}
	}
	blockSize, size := int64(l.md.blockSize), int64(l.md.virtualSize)
	for i, e := range blocks {
		switch e & batStateMask {
		case stateNotPresent, stateUndefined, stateZero, stateUnmapped, stateUnmappedV095:
		case stateFullyPresent, statePartlyPresent:
			// The last block may be cut short by the end of the file
			// (block/vhdx.c vhdx_check_bat_entries): it reads as zeros there.
			length := min(blockSize, size-int64(i)*blockSize)
			off := e & batOffsetMask
			if err := checkBlock(l.src.Size, reserved, off, length); err != nil {
				if add("payload block %d: %v", i, err) {
					return problems, count
				}
				continue
			}
			inUse = append(inUse, used{int64(off), length, fmt.Sprintf("payload block %d", i)})
			// A disk without a parent has no bitmap entry after its last
			// chunk ([MS-VHDX] 2.5): its partially present blocks have none.
			if c := int64(i) / l.chunkRatio; e&batStateMask == statePartlyPresent &&
				(c >= int64(len(bitmaps)) || bitmaps[c]&batStateMask != stateBitmapPresent) {
				if add("payload block %d is partially present but its sector bitmap is not", i) {
					return problems, count
				}
			}
		default:
			if add("payload block %d has the state %d", i, e&batStateMask) {
				return problems, count
			}
		}
	}
	slices.SortFunc(inUse, func(a, b used) int { return cmp.Compare(a.off, b.off) })
	for i := 1; i < len(inUse); i++ {
		if a, b := inUse[i-1], inUse[i]; a.off+a.len > b.off {
			if add("%s at %#x overlaps %s at %#x", b.what, b.off, a.what, a.off) {
				return problems, count
			}
		}
	}
	return problems, count
}

// reserved returns the ranges of the file no block may overlap: the
// header section, the log, the metadata and the BAT.
func (l *layout) reserved() []region {
	return []region{{0, mib}, {l.logOffset, l.logLength}, {l.meta.offset, l.meta.length}, {l.bat.offset, l.bat.length}}
}

// checkBlock checks that a block of length bytes at off starts inside the
// file and overlaps none of the reserved regions.
func checkBlock(fileSize int64, reserved []region, off uint64, length int64) error {
	if off >= uint64(fileSize) || off+uint64(length) > uint64(fileSize) {
		return fmt.Errorf("at %#x (%d bytes) lies beyond the end of the file (%d bytes)", off, length, fileSize)
	}
	for _, r := range reserved {
		if int64(off) < r.offset+r.length && r.offset < int64(off)+length {
			return fmt.Errorf("at %#x (%d bytes) overlaps the image's structures at %#x", off, length, r.offset)
		}
	}
	return nil
}

func (im *rdImage) Size() int64     { return im.size }
func (im *rdImage) Close() error    { return nil }
func (im *rdImage) Info() disk.Info { return im.info }

// ReadAt reads the virtual disk.
func (im *rdImage) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("vhdx: read at negative offset %d", off)
	}
	if off >= im.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), im.size-off))
	for done := 0; done < n; {
		pos := off + int64(done)
		block, within := pos/im.blockSize, pos%im.blockSize
		k := int(min(int64(n-done), im.blockSize-within))
		if err := im.readBlock(p[done:done+k], block, within); err != nil {
			return done, fmt.Errorf("vhdx: reading virtual offset %#x: %w", pos, err)
		}
		done += k
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readBlock reads p at within of payload block block.
func (im *rdImage) readBlock(p []byte, block, within int64) error {
	e := im.blocks[block]
	host := int64(e&batOffsetMask) + within
	switch e & batStateMask {
	case stateFullyPresent:
		return blockio.ReadPadded(im.src.R, im.src.Size, p, host)
	case statePartlyPresent:
		return im.readPartial(p, block, within)
	default:
		clear(p)
		return nil
	}
}

// readPartial reads a partially present block: the sectors its sector
// bitmap marks are in the block, the others read as zeros (there is no
// parent: differencing disks are refused).
func (im *rdImage) readPartial(p []byte, block, within int64) error {
	bitmap := int64(im.bitmaps[block/im.chunkRatio] & batOffsetMask)
	// The bit of the first sector of the block, in its chunk's bitmap.
	first := (block % im.chunkRatio) * (im.blockSize / im.sector)
	host := int64(im.blocks[block]&batOffsetMask) + within
	for done := int64(0); done < int64(len(p)); {
		sector := (within + done) / im.sector
		k := min(int64(len(p))-done, im.sector-(within+done)%im.sector)
		bit := first + sector
		var b [1]byte
		if err := blockio.ReadPadded(im.src.R, im.src.Size, b[:], bitmap+bit/8); err != nil {
			return err
		}
		q := p[done : done+k]
		if b[0]>>(bit%8)&1 != 0 {
			if err := blockio.ReadPadded(im.src.R, im.src.Size, q, host+done); err != nil {
				return err
			}
		} else {
			clear(q)
		}
		done += k
	}
	return nil
}

// Extents describes [off, off+n): blocks that are not present, zero or
// unmapped are Zero runs.
func (im *rdImage) Extents(off, n int64) ([]disk.Extent, error) {
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("vhdx: extents of a negative range (%d, %d)", off, n)
	}
	end := min(off+n, im.size)
	var out []disk.Extent
	for pos := off; pos < end; {
		block := pos / im.blockSize
		next := min(end, (block+1)*im.blockSize)
		s := im.blocks[block] & batStateMask
		zero := s != stateFullyPresent && s != statePartlyPresent
		if k := len(out); k > 0 && out[k-1].Zero == zero {
			out[k-1].Length += next - pos
		} else {
			out = append(out, disk.Extent{Offset: pos, Length: next - pos, Zero: zero})
		}
		pos = next
	}
	return out, nil
}
