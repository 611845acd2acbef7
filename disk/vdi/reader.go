package vdi

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// image is a VDI image opened for reading. The block map is held in memory
// (4 bytes a MiB, within disk.Limits); nothing else is.
type image struct {
	r        io.ReaderAt
	fileSize int64
	h        header
	size     int64
	bmap     []uint32
}

// Open opens the VDI image held in the size bytes of r. Blocks the map
// places beyond the end of the file read as zeros, as qemu reads them.
func Open(r io.ReaderAt, size int64, _ disk.OpenOptions) (disk.Image, error) {
	src := blockio.Source{R: r, Size: size}
	h, err := readHeader(src, disk.Limits{})
	if err != nil {
		return nil, fmt.Errorf("vdi: %w", err)
	}
	bmap, err := readBmap(src, h)
	if err != nil {
		return nil, fmt.Errorf("vdi: %w", err)
	}
	return &image{r: r, fileSize: size, h: h, size: int64(h.diskSize), bmap: bmap}, nil
}

// readBmap reads the block map, whose place readHeader checked.
func readBmap(src blockio.Source, h header) ([]uint32, error) {
	bmap := make([]uint32, h.blocks)
	const chunk = 64 << 10 // entries per read
	for i := 0; i < len(bmap); i += chunk {
		n := min(chunk, len(bmap)-i)
		b, err := src.Read("the block map", int64(h.offsetBmap)+int64(i)*4, int64(n)*4)
		if err != nil {
			return nil, err
		}
		for j := range n {
			bmap[i+j] = binary.LittleEndian.Uint32(b[4*j:])
		}
	}
	return bmap, nil
}

func (im *image) Size() int64 { return im.size }

func (im *image) Close() error { return nil }

func (im *image) Info() disk.Info { return im.h.info() }

// host returns where block b is stored, or -1 when it reads as zeros.
func (im *image) host(b int64) int64 {
	e := im.bmap[b]
	if e >= discarded {
		return -1
	}
	return int64(im.h.offsetData) + int64(e)*blockSize
}

// ReadAt reads the virtual disk; a block that is not stored reads as zeros.
func (im *image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("vdi: read at negative offset %d", off)
	}
	if off >= im.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := min(int64(len(p)), im.size-off)
	for pos := int64(0); pos < n; {
		voff := off + pos
		within := voff % blockSize
		k := min(n-pos, blockSize-within)
		piece := p[pos : pos+k]
		if host := im.host(voff / blockSize); host < 0 {
			clear(piece)
		} else if err := blockio.ReadPadded(im.r, im.fileSize, piece, host+within); err != nil {
			return int(pos), fmt.Errorf("vdi: %w: reading block %d at %#x: %w", disk.ErrFormat, voff/blockSize, host, err)
		}
		pos += k
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

// Extents: a stored block is data, any other reads as zeros.
func (im *image) Extents(off, n int64) ([]disk.Extent, error) {
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("vdi: extents of [%d, +%d): negative offset or length", off, n)
	}
	if off >= im.size || n == 0 {
		return nil, nil
	}
	end := off + min(n, im.size-off)
	var out []disk.Extent
	for pos := off; pos < end; {
		k := min(end-pos, blockSize-pos%blockSize)
		zero := im.host(pos/blockSize) < 0
		if i := len(out) - 1; i >= 0 && out[i].Zero == zero {
			out[i].Length += k
		} else {
			out = append(out, disk.Extent{Offset: pos, Length: k, Zero: zero})
		}
		pos += k
	}
	return out, nil
}
