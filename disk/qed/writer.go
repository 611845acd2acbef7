package qed

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
	"github.com/ucphhpc/gen-vm-image-go/size"
)

// The writer lays an image out as qemu-img create and qemu's allocating
// writes do:
//
//	cluster 0        header (header_size 1)
//	clusters 1...    the L1 table (table_size clusters)
//	then             L2 tables and data clusters, appended in the order
//	                 writes need them
//
// Clusters are only ever appended, so every cluster past the header is
// referenced exactly once and there is nothing to leak. Ranges never
// written stay holes in the file and read as zeros, which is what an
// unallocated entry means, so a new table needs no writing until it has
// entries. The layout depends on the order of the writes only: writing the
// same data in the same order gives the same bytes.

// Defaults of qemu-img create -f qed.
const (
	defaultClusterSize = 64 << 10
	defaultTableSize   = 4
)

// wrCacheBytes bounds the L2 table pages the writer keeps.
const wrCacheBytes = 8 << 20

// errWriterClosed is returned by every method of a closed writer.
var errWriterClosed = fmt.Errorf("qed: writer: %w", os.ErrClosed)

// createGeometry reads and validates cluster_size and table_size.
func createGeometry(opt disk.CreateOptions) (clusterSize, tableSize uint32, err error) {
	clusterSize, tableSize = defaultClusterSize, defaultTableSize
	if v, ok := opt.Options["cluster_size"]; ok {
		n, err := size.Parse(v)
		if err != nil || n > maxClusterSize || !validClusterSize(uint32(n)) {
			return 0, 0, fmt.Errorf("qed: %w: cluster_size=%s: the cluster size must be a power of two from 4K to 64M", disk.ErrOption, v)
		}
		clusterSize = uint32(n)
	}
	if v, ok := opt.Options["table_size"]; ok {
		// qemu takes an integer here (a number of clusters), not a size.
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || !validTableSize(uint32(n)) {
			return 0, 0, fmt.Errorf("qed: %w: table_size=%s: the table size must be 2, 4, 8 or 16 clusters", disk.ErrOption, v)
		}
		if n == 1 {
			return 0, 0, fmt.Errorf("qed: %w: table_size=1: qemu cannot open images with tables of one cluster (it takes their L1 table offset for an overflow); use 2, 4, 8 or 16", disk.ErrOption)
		}
		tableSize = uint32(n)
	}
	return clusterSize, tableSize, nil
}

// createSize is the virtual size of an image made with opt when size bytes
// are asked for: rounded up to 512 bytes, within what the tables map.
func createSize(n int64, opt disk.CreateOptions) (int64, string, error) {
	cs, ts, err := createGeometry(opt)
	if err != nil {
		return 0, "", err
	}
	if n < 0 || n > 1<<62 {
		return 0, "", fmt.Errorf("qed: %w: virtual size %d out of range", disk.ErrUnsupported, n)
	}
	rounded := (n + 511) &^ 511
	if max := maxImageSize(cs, ts); uint64(rounded) > max {
		return 0, "", fmt.Errorf("qed: %w: a virtual size of %d bytes is more than the %d bytes tables of %d clusters of %d bytes map (use a larger cluster_size or table_size)",
			disk.ErrUnsupported, rounded, max, ts, cs)
	}
	return rounded, "", nil
}

// BlockSize is the cluster size of an image Create makes with opt: QED
// allocates whole clusters.
func BlockSize(opt disk.CreateOptions) int64 {
	cs, _, err := createGeometry(opt)
	if err != nil {
		return defaultClusterSize // Create refuses the options anyway
	}
	return int64(cs)
}

// wrImage is the QED disk.Writer.
type wrImage struct {
	f    *os.File
	h    header
	g    geometry
	size int64 // virtual size, a multiple of 512

	l1    []uint64 // the L1 entries that map size; the rest of the table stays zero
	end   int64    // first byte after the allocated clusters (cluster aligned)
	pages *wrPageCache
	run   blockio.RunWriter

	err    error // first I/O error; the writer is unusable after it
	closed bool
}

// Create starts a new QED image of the given virtual size in f, which it
// empties first, with cluster_size (64K by default) and table_size (4 by
// default) from opt. The size is rounded up to a multiple of 512 bytes. The
// header says the image needs a check until Close has written everything,
// as qemu marks an image while it allocates. Close neither syncs nor
// closes f.
func Create(f *os.File, n int64, opt disk.CreateOptions) (disk.Writer, error) {
	cs, ts, err := createGeometry(opt)
	if err != nil {
		return nil, err
	}
	n, _, err = createSize(n, opt)
	if err != nil {
		return nil, err
	}
	h := header{clusterSize: cs, tableSize: ts, headerSize: 1, l1Offset: uint64(cs), imageSize: uint64(n), features: featNeedCheck}
	g := h.geometry()
	w := &wrImage{f: f, h: h, g: g, size: n, end: g.clusterSize + g.tableBytes, run: blockio.RunWriter{W: f}}
	w.l1 = make([]uint64, g.l1Entries(n))
	pageBytes := min(g.tableBytes, maxPageBytes)
	w.pages = newWrPageCache(pageBytes, max(4, wrCacheBytes/pageBytes))
	// Empty the file only when it is not empty already (see qcow2.Create:
	// truncating makes ext4 flush the file on close).
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("qed: create: %w", err)
	}
	if st.Size() != 0 {
		if err := f.Truncate(0); err != nil {
			return nil, fmt.Errorf("qed: create: %w", err)
		}
	}
	if _, err := f.WriteAt(h.marshal(), 0); err != nil {
		return nil, fmt.Errorf("qed: writing the header: %w", err)
	}
	return w, nil
}

func (w *wrImage) usable() error {
	if w.closed {
		return errWriterClosed
	}
	return w.err
}

func (w *wrImage) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return err
}

// WriteAt writes virtual-disk bytes. New clusters are appended at the end
// of the file; a run of them is written with one pwrite. Zeros written
// where nothing is allocated are skipped: those ranges read as zeros
// already. Allocated clusters are updated in place.
func (w *wrImage) WriteAt(p []byte, off int64) (int, error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	if off < 0 || off > w.size || int64(len(p)) > w.size-off {
		return 0, fmt.Errorf("qed: write of %d bytes at %d lies outside the virtual disk of %d bytes", len(p), off, w.size)
	}
	cs := w.g.clusterSize
	for pos := 0; pos < len(p); {
		voff := off + int64(pos)
		within := voff & (cs - 1)
		n := int(min(cs-within, int64(len(p)-pos)))
		seg := p[pos : pos+n]
		host, err := w.hostFor(voff>>w.g.clusterBits, seg)
		if err != nil {
			return pos, w.fail(err)
		}
		if host != 0 {
			if err := w.queue(host+within, seg); err != nil {
				return pos, w.fail(err)
			}
		}
		pos += n
	}
	if err := w.flushRun(); err != nil {
		return 0, w.fail(err)
	}
	return len(p), nil
}

// hostFor returns the host offset of virtual cluster vc, allocating it (and
// its L2 table) unless seg, the data about to be written there, is all
// zeros. It returns 0 when the cluster is unallocated and may stay so.
func (w *wrImage) hostFor(vc int64, seg []byte) (int64, error) {
	g := w.g
	l1i, l2i := vc>>g.entryBits, vc&(int64(1)<<g.entryBits-1)
	if w.l1[l1i] == entryUnallocated {
		if blockio.IsZero(seg) {
			return 0, nil
		}
		w.l1[l1i] = uint64(w.end)
		w.end += g.tableBytes
	}
	page, i, err := w.pages.entry(w.f, int64(w.l1[l1i]), l2i)
	if err != nil {
		return 0, err
	}
	if e := page.entry(i); e != entryUnallocated {
		return int64(e), nil
	}
	if blockio.IsZero(seg) {
		return 0, nil
	}
	host := w.end
	w.end += g.clusterSize
	page.setEntry(i, uint64(host))
	return host, nil
}

// queue adds seg, to be written at host, to the pending run (see
// blockio.RunWriter).
func (w *wrImage) queue(host int64, seg []byte) error {
	if err := w.run.Queue(host, seg); err != nil {
		return fmt.Errorf("qed: %w", err)
	}
	return nil
}

func (w *wrImage) flushRun() error {
	if err := w.run.Flush(); err != nil {
		return fmt.Errorf("qed: %w", err)
	}
	return nil
}

// Resize grows the virtual size (rounded up to a multiple of 512) up to
// what the tables map. Shrinking is refused, as qemu-img resize refuses it
// for QED: without refcounts, the clusters it dropped would be leaked.
func (w *wrImage) Resize(n int64, allowShrink bool) error {
	if err := w.usable(); err != nil {
		return err
	}
	n, _, err := createSize(n, disk.CreateOptions{Options: map[string]string{
		"cluster_size": strconv.Itoa(int(w.h.clusterSize)), "table_size": strconv.Itoa(int(w.h.tableSize))}})
	if err != nil {
		return err
	}
	switch {
	case n == w.size:
		return nil
	case n < w.size && !allowShrink:
		return fmt.Errorf("qed: resize from %d to %d bytes: %w", w.size, n, disk.ErrShrink)
	case n < w.size:
		return fmt.Errorf("qed: %w: resize from %d to %d bytes: shrinking a QED image is not supported (qemu-img does not either)", disk.ErrUnsupported, w.size, n)
	}
	if need := w.g.l1Entries(n); need > int64(len(w.l1)) {
		w.l1 = append(w.l1, make([]uint64, need-int64(len(w.l1)))...)
	}
	w.size = n
	return nil
}

// Close writes the L2 pages still in memory, the L1 table and the header,
// whose need-check bit it clears last. It neither syncs nor closes the
// file.
func (w *wrImage) Close() error {
	if err := w.usable(); err != nil {
		return err
	}
	w.closed = true
	if err := w.finish(); err != nil {
		w.err = err
		return err
	}
	return nil
}

func (w *wrImage) finish() error {
	if err := w.flushRun(); err != nil {
		return err
	}
	if err := w.pages.flush(w.f); err != nil {
		return err
	}
	buf := make([]byte, 0, min(len(w.l1)*8, 1<<20))
	for i := 0; i < len(w.l1); {
		buf = buf[:0]
		for ; i < len(w.l1) && len(buf) < cap(buf); i++ {
			buf = binary.LittleEndian.AppendUint64(buf, w.l1[i])
		}
		if _, err := w.f.WriteAt(buf, int64(w.h.l1Offset)+int64(i)*8-int64(len(buf))); err != nil {
			return fmt.Errorf("qed: writing the L1 table: %w", err)
		}
	}
	// Every table and cluster lies inside the file, which ends on a cluster
	// boundary (qemu rounds the file size down to one).
	st, err := w.f.Stat()
	if err != nil {
		return fmt.Errorf("qed: %w", err)
	}
	if st.Size() < w.end {
		if err := w.f.Truncate(w.end); err != nil {
			return fmt.Errorf("qed: %w", err)
		}
	}
	h := w.h
	h.imageSize = uint64(w.size)
	h.features &^= featNeedCheck
	if _, err := w.f.WriteAt(h.marshal(), 0); err != nil {
		return fmt.Errorf("qed: writing the header: %w", err)
	}
	return nil
}

// wrPage is a page of one L2 table held by the writer.
type wrPage struct {
	host  int64
	buf   []byte
	dirty bool
	used  uint64 // cache clock at the last use, for LRU eviction
}

func (p *wrPage) entry(i int64) uint64 { return binary.LittleEndian.Uint64(p.buf[i*8:]) }

func (p *wrPage) setEntry(i int64, e uint64) {
	binary.LittleEndian.PutUint64(p.buf[i*8:], e)
	p.dirty = true
}

// wrPageCache is a small write-back cache of L2 table pages: writes in
// virtual order touch one page at a time, so a few are plenty, and memory
// stays bounded whatever the geometry.
type wrPageCache struct {
	pageBytes int64
	capacity  int
	pages     map[int64]*wrPage // by host offset
	last      *wrPage
	clock     uint64
}

func newWrPageCache(pageBytes, capacity int64) *wrPageCache {
	return &wrPageCache{pageBytes: pageBytes, capacity: int(capacity), pages: map[int64]*wrPage{}}
}

// entry returns the page that holds entry l2i of the table at tableHost,
// and the entry's index in it, reading the page back from f if it was
// evicted (a page never written reads as zeros: a hole or past the end).
func (c *wrPageCache) entry(f *os.File, tableHost, l2i int64) (*wrPage, int64, error) {
	perPage := c.pageBytes / 8
	host := tableHost + l2i/perPage*c.pageBytes
	i := l2i % perPage
	if c.last != nil && c.last.host == host {
		return c.last, i, nil
	}
	c.clock++
	if p := c.pages[host]; p != nil {
		p.used = c.clock
		c.last = p
		return p, i, nil
	}
	var buf []byte
	if len(c.pages) >= c.capacity {
		var victim *wrPage
		for _, p := range c.pages {
			if victim == nil || p.used < victim.used {
				victim = p
			}
		}
		if err := victim.write(f); err != nil {
			return nil, 0, err
		}
		delete(c.pages, victim.host)
		buf = victim.buf
	} else {
		buf = make([]byte, c.pageBytes)
	}
	n, err := f.ReadAt(buf, host)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, fmt.Errorf("qed: reading back L2 entries at %#x: %w", host, err)
	}
	clear(buf[n:])
	p := &wrPage{host: host, buf: buf, used: c.clock}
	c.pages[host] = p
	c.last = p
	return p, i, nil
}

func (p *wrPage) write(f *os.File) error {
	if !p.dirty {
		return nil
	}
	if _, err := f.WriteAt(p.buf, p.host); err != nil {
		return fmt.Errorf("qed: writing L2 entries at %#x: %w", p.host, err)
	}
	p.dirty = false
	return nil
}

// flush writes every dirty page.
func (c *wrPageCache) flush(f *os.File) error {
	for _, p := range c.pages {
		if err := p.write(f); err != nil {
			return err
		}
	}
	return nil
}
