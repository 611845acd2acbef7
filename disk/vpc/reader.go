package vpc

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/disk/raw"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// Open opens a fixed or dynamic VHD for reading. Its virtual size follows
// qemu's rule (see footerInfo.virtualSize), so that we and qemu-img read
// the same disk. Every block the table points at must lie inside the file.
//
// A block is read whole, as qemu reads it: its sector bitmap is not
// consulted. The writers we know (Hyper-V, Virtual PC, qemu, Disk2vhd)
// zero a block when they allocate it, so its unmarked sectors read as
// zeros either way.
func Open(r io.ReaderAt, size int64, _ disk.OpenOptions) (disk.Image, error) {
	src := blockio.Source{R: r, Size: size}
	l, err := parse(src, disk.Limits{}.WithDefaults())
	if err != nil {
		return nil, fmt.Errorf("vpc: %w", err)
	}
	if l.footer.diskType == diskFixed {
		// The data is the first virtualSize bytes of the file, as a raw
		// image reads them (holes included, when r is a file).
		img, err := raw.Open(r, l.virtualSize, disk.OpenOptions{})
		if err != nil {
			return nil, fmt.Errorf("vpc: %w", err)
		}
		return &fixedImage{Image: img, info: l.info()}, nil
	}
	im := &dynImage{r: r, l: l, bitmap: bitmapSize(l.blockSize)}
	if err := im.loadTable(src); err != nil {
		return nil, fmt.Errorf("vpc: %w", err)
	}
	return im, nil
}

// fixedImage is a fixed disk: raw data followed by the footer.
type fixedImage struct {
	disk.Image
	info disk.Info
}

func (m *fixedImage) Info() disk.Info { return m.info }

// dynImage is a dynamic disk.
type dynImage struct {
	r      io.ReaderAt
	l      layout
	bitmap int64    // bytes of sector bitmap before each block's data
	table  []uint32 // BAT entries covering the virtual size: sector offsets of blocks, or unallocated
}

// loadTable reads the entries of the BAT that cover the virtual disk (the
// rest can never be read) and checks that each block lies in the file.
func (im *dynImage) loadTable(src blockio.Source) error {
	n := (im.l.virtualSize + im.l.blockSize - 1) / im.l.blockSize
	b, err := src.Read("the block allocation table", im.l.tableOffset, n*4)
	if err != nil {
		return err
	}
	im.table = make([]uint32, n)
	span := im.bitmap + im.l.blockSize
	for i := range im.table {
		e := binary.BigEndian.Uint32(b[4*i:])
		im.table[i] = e
		if e == unallocated {
			continue
		}
		if start := int64(e) * 512; start > src.Size || span > src.Size-start {
			return refuse(disk.ErrFormat, "block %d at offset %#x (%d bytes with its bitmap) runs past the end of the file (%d bytes): the image is truncated",
				i, start, span, src.Size)
		}
	}
	return nil
}

func (im *dynImage) Size() int64  { return im.l.virtualSize }
func (im *dynImage) Close() error { return nil }
func (im *dynImage) Info() disk.Info {
	return im.l.info()
}

// host returns the file offset of virtual offset off's data, or -1 when
// its block is unallocated.
func (im *dynImage) host(off int64) int64 {
	e := im.table[off/im.l.blockSize]
	if e == unallocated {
		return -1
	}
	return int64(e)*512 + im.bitmap + off%im.l.blockSize
}

// ReadAt reads the virtual disk; unallocated blocks read as zeros. Reads
// past the virtual size are short, as io.ReaderAt says.
func (im *dynImage) ReadAt(p []byte, off int64) (int, error) {
	size := im.l.virtualSize
	if off < 0 {
		return 0, fmt.Errorf("vpc: read at negative offset %d", off)
	}
	if off >= size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	var short error
	if int64(len(p)) > size-off {
		p, short = p[:size-off], io.EOF
	}
	bs := im.l.blockSize
	for done := 0; done < len(p); {
		pos := off + int64(done)
		n := int(min(bs-pos%bs, int64(len(p)-done)))
		seg := p[done : done+n]
		if h := im.host(pos); h < 0 {
			clear(seg)
		} else if err := blockio.ReadFull(im.r, seg, h); err != nil {
			return done, fmt.Errorf("vpc: %w: reading block %d at offset %#x: %w", disk.ErrFormat, pos/bs, h, err)
		}
		done += n
	}
	return len(p), short
}

// Extents reports unallocated blocks as zero runs and allocated ones as
// data, coalesced.
func (im *dynImage) Extents(off, n int64) ([]disk.Extent, error) {
	end := min(off+n, im.l.virtualSize)
	var out []disk.Extent
	bs := im.l.blockSize
	for pos := max(off, 0); pos < end; {
		next := min(end, (pos/bs+1)*bs)
		zero := im.table[pos/bs] == unallocated
		if k := len(out) - 1; k >= 0 && out[k].Zero == zero {
			out[k].Length += next - pos
		} else {
			out = append(out, disk.Extent{Offset: pos, Length: next - pos, Zero: zero})
		}
		pos = next
	}
	return out, nil
}
