package qed

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// rdCacheBytes bounds the L2 table pages a reader keeps: 32 MiB of entries
// map 256 GiB of virtual disk with 64 KiB clusters.
const rdCacheBytes = 32 << 20

// maxPageBytes is the most of one table read at once. Tables are up to 16
// clusters of 64 MiB; they are read, cached and written in pages of at most
// this size, so that memory stays bounded whatever the geometry.
const maxPageBytes = 256 << 10

// Open opens the QED image held in the size bytes of r for reading. It
// refuses what Inspect refuses (a backing file, unknown features, a
// geometry qemu would not open). An image marked as needing a check is read
// as it is, as qemu reads it when it opens it read-only; every table entry
// is checked against the file before it is followed.
func Open(r io.ReaderAt, size int64, _ disk.OpenOptions) (disk.Image, error) {
	_, h, err := inspect(blockio.Source{R: r, Size: size}, disk.Limits{})
	if err != nil {
		return nil, fmt.Errorf("qed: %w", err)
	}
	g := h.geometry()
	im := &rdImage{
		r:         r,
		h:         h,
		g:         g,
		fileSize:  size &^ (g.clusterSize - 1),
		size:      int64(h.imageSize),
		pageBytes: min(g.tableBytes, maxPageBytes),
	}
	im.pages = blockio.NewTableCache(rdCacheBytes / im.pageBytes)
	n := g.l1Entries(im.size)
	if n > 0 {
		buf := make([]byte, n*8)
		if err := blockio.ReadFull(r, buf, int64(h.l1Offset)); err != nil {
			return nil, fmt.Errorf("qed: reading the L1 table at %#x: %w", h.l1Offset, err)
		}
		im.l1 = make([]uint64, n)
		for i := range im.l1 {
			im.l1[i] = binary.LittleEndian.Uint64(buf[i*8:])
		}
	}
	return im, nil
}

// rdImage is an open QED image. Everything in it is immutable after Open
// except the page cache, which is safe for concurrent use.
type rdImage struct {
	r         io.ReaderAt
	h         header
	g         geometry
	fileSize  int64 // rounded down to a cluster, as qemu does
	size      int64 // virtual size
	l1        []uint64
	pageBytes int64
	pages     *blockio.TableCache
}

// Size returns the virtual size in bytes.
func (im *rdImage) Size() int64 { return im.size }

// Info describes the image as qemu-img info would.
func (im *rdImage) Info() disk.Info { return headerInfo(im.h) }

// Close drops the cached tables. It does not close the file.
func (im *rdImage) Close() error {
	im.pages.Clear()
	return nil
}

func formatErr(format string, args ...any) error {
	return fmt.Errorf("qed: %w: "+format, append([]any{disk.ErrFormat}, args...)...)
}

// rdRun is a run of the virtual disk with one kind of storage: zeros, or
// data contiguous at host from host.
type rdRun struct {
	zero bool
	n    int64
	host int64
}

// rdCursor walks the tables, remembering the page of L2 entries it used
// last. A cursor belongs to one goroutine.
type rdCursor struct {
	im       *rdImage
	pageHost int64 // host offset of page; 0 for none
	page     []byte
}

// run describes the longest run of one kind that starts at the virtual
// offset off (0 <= off < end <= size) and ends at or before end.
func (c *rdCursor) run(off, end int64) (rdRun, error) {
	im, g := c.im, c.im.g
	l1i := off >> (g.entryBits + g.clusterBits)
	if l1i >= int64(len(im.l1)) {
		return rdRun{}, formatErr("virtual offset %#x is not covered by the L1 table", off)
	}
	l2 := im.l1[l1i]
	if l2 == entryUnallocated {
		return rdRun{zero: true, n: min(end, (l1i+1)<<(g.entryBits+g.clusterBits)) - off}, nil
	}
	if !g.tableOK(l2, im.fileSize) {
		return rdRun{}, formatErr("L1 entry %d (virtual offset %#x): the L2 table at host offset %#x is not cluster aligned, overlaps the header or lies beyond the end of the file (%d bytes)",
			l1i, l1i<<(g.entryBits+g.clusterBits), l2, im.fileSize)
	}
	// The page of the table that holds the entry of off's cluster.
	vc := off >> g.clusterBits
	index := vc & (int64(1)<<g.entryBits - 1)
	pageEntries := im.pageBytes / 8
	pageHost := int64(l2) + index/pageEntries*im.pageBytes
	if err := c.load(pageHost); err != nil {
		return rdRun{}, err
	}
	first := vc - index%pageEntries // virtual cluster of the page's first entry
	limit := min(end, (first+pageEntries)<<g.clusterBits)
	var r rdRun
	pos := off
	for pos < limit {
		cl := pos >> g.clusterBits
		e := binary.LittleEndian.Uint64(c.page[(cl-first)*8:])
		next := min(limit, (cl+1)<<g.clusterBits)
		zero := e == entryUnallocated || e == entryZero
		if !zero && !g.clusterOK(e, im.fileSize) {
			if pos > off {
				break // reported when the caller gets there
			}
			return rdRun{}, formatErr("L2 entry %d of the table at host offset %#x (virtual offset %#x): data cluster at host offset %#x is not cluster aligned, overlaps the header or lies beyond the end of the file (%d bytes)",
				index+(cl-vc), l2, cl<<g.clusterBits, e, im.fileSize)
		}
		host := int64(e) + pos - cl<<g.clusterBits
		if pos == off {
			r = rdRun{zero: zero, host: host}
		} else if zero != r.zero || (!zero && host != r.host+(pos-off)) {
			break
		}
		pos = next
	}
	r.n = pos - off
	return r, nil
}

func (c *rdCursor) load(pageHost int64) error {
	if c.page != nil && c.pageHost == pageHost {
		return nil
	}
	im := c.im
	page, err := im.pages.Get(pageHost, im.pageBytes, func(buf []byte) error {
		if err := blockio.ReadFull(im.r, buf, pageHost); err != nil {
			return fmt.Errorf("qed: reading L2 entries at host offset %#x: %w", pageHost, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.page, c.pageHost = page, pageHost
	return nil
}

// ReadAt reads the virtual disk. It is safe for concurrent use: each call
// walks the tables with its own cursor; runs of clusters contiguous at host
// are read with one pread.
func (im *rdImage) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("qed: read at negative offset %d", off)
	}
	if off >= im.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := min(int64(len(p)), im.size-off)
	c := rdCursor{im: im}
	for pos := off; pos < off+n; {
		r, err := c.run(pos, off+n)
		if err != nil {
			return int(pos - off), err
		}
		dst := p[pos-off : pos-off+r.n]
		if r.zero {
			clear(dst)
		} else if err := blockio.ReadFull(im.r, dst, r.host); err != nil {
			return int(pos - off), fmt.Errorf("qed: reading %d bytes at host offset %#x: %w", len(dst), r.host, err)
		}
		pos += r.n
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

// Extents describes [off, off+n) as Data and Zero runs, coalesced, from
// the tables alone: unallocated and zero clusters are Zero.
func (im *rdImage) Extents(off, n int64) ([]disk.Extent, error) {
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("qed: extents of [%d, +%d): negative offset or length", off, n)
	}
	if off >= im.size || n == 0 {
		return nil, nil
	}
	end := off + min(n, im.size-off)
	c := rdCursor{im: im}
	var out []disk.Extent
	for pos := off; pos < end; {
		r, err := c.run(pos, end)
		if err != nil {
			return nil, err
		}
		if k := len(out) - 1; k >= 0 && out[k].Zero == r.zero {
			out[k].Length += r.n
		} else {
			out = append(out, disk.Extent{Offset: pos, Length: r.n, Zero: r.zero})
		}
		pos += r.n
	}
	return out, nil
}
