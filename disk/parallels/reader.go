package parallels

import (
	"fmt"
	"io"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// image is a Parallels image opened for reading; the BAT is held in memory
// (within disk.Limits), nothing else.
type image struct {
	r        io.ReaderAt
	fileSize int64
	h        header
	size     int64
	bat      []uint32
}

// Open opens the Parallels image held in the size bytes of r. An image
// whose in-use flag is set (not closed cleanly) is read as it is, as qemu
// reads it read-only. Clusters beyond the end of the file, and beyond the
// BAT, read as zeros, as in qemu.
func Open(r io.ReaderAt, size int64, _ disk.OpenOptions) (disk.Image, error) {
	src := blockio.Source{R: r, Size: size}
	h, err := readHeader(src, disk.Limits{})
	if err != nil {
		return nil, fmt.Errorf("parallels: %w", err)
	}
	bat, err := readBAT(src, h)
	if err != nil {
		return nil, fmt.Errorf("parallels: %w", err)
	}
	return &image{r: r, fileSize: size, h: h, size: int64(h.sectors * sectorSize), bat: bat}, nil
}

func (im *image) Size() int64     { return im.size }
func (im *image) Close() error    { return nil }
func (im *image) Info() disk.Info { return im.h.info() }

// host returns where cluster c is stored, or -1 when it reads as zeros.
func (im *image) host(c int64) int64 {
	if c >= int64(len(im.bat)) || im.bat[c] == 0 {
		return -1
	}
	return int64(im.bat[c]) * im.h.entryUnit()
}

// ReadAt reads the virtual disk.
func (im *image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("parallels: read at negative offset %d", off)
	}
	if off >= im.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	cs := im.h.clusterSize
	n := min(int64(len(p)), im.size-off)
	for pos := int64(0); pos < n; {
		voff := off + pos
		within := voff % cs
		k := min(n-pos, cs-within)
		piece := p[pos : pos+k]
		if host := im.host(voff / cs); host < 0 {
			clear(piece)
		} else if err := blockio.ReadPadded(im.r, im.fileSize, piece, host+within); err != nil {
			return int(pos), fmt.Errorf("parallels: %w: reading cluster %d at %#x: %w", disk.ErrFormat, voff/cs, host, err)
		}
		pos += k
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

// Extents: a stored cluster is data, any other reads as zeros.
func (im *image) Extents(off, n int64) ([]disk.Extent, error) {
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("parallels: extents of [%d, +%d): negative offset or length", off, n)
	}
	if off >= im.size || n == 0 {
		return nil, nil
	}
	cs := im.h.clusterSize
	end := off + min(n, im.size-off)
	var out []disk.Extent
	for pos := off; pos < end; {
		c := pos / cs
		if c >= int64(len(im.bat)) {
			// Beyond the BAT: zeros to the end.
			out = appendExtent(out, pos, end-pos, true)
			break
		}
		k := min(end-pos, cs-pos%cs)
		out = appendExtent(out, pos, k, im.bat[c] == 0)
		pos += k
	}
	return out, nil
}

func appendExtent(out []disk.Extent, off, n int64, zero bool) []disk.Extent {
	if i := len(out) - 1; i >= 0 && out[i].Zero == zero {
		out[i].Length += n
		return out
	}
	return append(out, disk.Extent{Offset: off, Length: n, Zero: zero})
}
