package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
	"github.com/ucphhpc/gen-vm-image-go/size"
)

// The writer produces qcow2 version 3 images (compat 1.1) with 16-bit
// refcounts, zlib compression type, no extensions and no backing file.
//
// Layout, as qemu-img create lays out a fresh image:
//
//	cluster 0     header
//	cluster 1     refcount table (when one cluster is enough; else appended at Close)
//	cluster 2     refcount block 0
//	cluster 3...  L1 table
//	then          L2 tables and data clusters, appended in the order writes need them
//	at Close      further refcount blocks (and a large refcount table), appended
//
// Host clusters are only ever allocated at the end of the file, so every
// cluster below the end is used exactly once, except the few ranges the
// writer frees (an L1 table that moved, clusters dropped by a shrink). That
// is what lets Close compute every refcount without having kept a refcount
// per cluster in memory.

const (
	wrRefcountOrder = DefaultRefcountOrder // 16-bit refcounts
	wrRefcountBits  = 1 << wrRefcountOrder
	// wrL2CacheBytes bounds the L2 tables the writer keeps in memory.
	wrL2CacheBytes = 8 << 20
	// Clusters 0, 1 and 2 hold the header, the refcount table and the first
	// refcount block; the L1 table starts at cluster 3.
	wrFirstL1Cluster = 3
)

// errWriterClosed is returned by every method of a closed writer.
var errWriterClosed = fmt.Errorf("qcow2: writer: %w", os.ErrClosed)

// wrImage is the qcow2 disk.Writer.
type wrImage struct {
	f           *os.File
	clusterBits uint32
	clusterSize int64
	l2Entries   int64 // entries per L2 table
	size        int64 // virtual size in bytes, a multiple of 512

	// The active L1 table, kept whole in memory (at most MaxL1Bytes), and
	// the clusters reserved for it in the file.
	l1         []uint64
	l1Offset   int64
	l1Clusters int64

	end   int64             // first host byte after the allocated clusters (cluster aligned)
	free  wrFreeList        // host clusters below end that nothing uses (refcount 0)
	cache *wrL2Cache        // write-back cache of L2 tables
	run   blockio.RunWriter // data not yet written: one contiguous host range
	zero  []byte            // one cluster of zeros, for zeroing a shrunk cluster's tail

	// Compressed clusters (writer_compress.go): the compressor (nil
	// unless the image is made compressed), the header's compression type,
	// where the next stream may start (0: on a new cluster), the refcounts
	// of the clusters holding streams and the streams not yet written.
	comp     *wrCompressor
	ctype    uint8
	nextByte int64
	refcount wrStreamRefcounts
	streams  wrStreamBuf

	err    error // first I/O error; the writer is unusable after it
	closed bool
}

// wrCompressing is the writer Create returns with CreateOptions.Compress:
// a disk.Compressor, for the converter to compress on every core.
type wrCompressing struct{ *wrImage }

func (w wrCompressing) CompressUnit() int64 { return w.clusterSize }

// Compress turns one cluster of virtual data into what the file stores for
// it. Safe for concurrent use; the result depends on unit alone.
func (w wrCompressing) Compress(off int64, unit []byte) ([]byte, error) {
	return w.comp.compress(unit)
}

func (w wrCompressing) WriteStored(off int64, stored []byte) error { return w.writeStored(off, stored) }

// Create starts a new qcow2 image of the given virtual size in f, which it
// truncates to zero first, with the cluster size of opt's cluster_size (64
// KiB by default; a power of two from 512 bytes to 2 MiB). The size is
// rounded up to a multiple of 512 bytes, as qemu-img does. The image is
// valid only after Close; Close neither syncs nor closes f. With
// opt.Compress the writer is a disk.Compressor, and the clusters handed to
// WriteStored are stored compressed with opt's compression_type (zlib by
// default, or zstd).
func Create(f *os.File, size int64, opt disk.CreateOptions) (disk.Writer, error) {
	bits, err := wrClusterBits(opt)
	if err != nil {
		return nil, err
	}
	ctype, err := compressionType(opt)
	if err != nil {
		return nil, err
	}
	cs := int64(1) << bits
	w := &wrImage{
		f:           f,
		run:         blockio.RunWriter{W: f},
		clusterBits: bits,
		clusterSize: cs,
		l2Entries:   cs / 8,
		l1Offset:    wrFirstL1Cluster * cs,
		ctype:       ctype,
	}
	size, err = w.checkSize(size)
	if err != nil {
		return nil, err
	}
	// Empty the file only when it is not empty already: on ext4 a
	// truncation to zero marks the file for a flush of all its data when
	// it is closed (auto_da_alloc), which would make closing a freshly
	// written image wait for the disk.
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("qcow2: create: %w", err)
	}
	if st.Size() != 0 {
		if err := f.Truncate(0); err != nil {
			return nil, fmt.Errorf("qcow2: create: %w", err)
		}
	}
	w.size = size
	w.l1 = make([]uint64, w.l1EntriesFor(size))
	w.l1Clusters = w.bytesToClusters(int64(len(w.l1)) * 8)
	w.end = w.l1Offset + w.l1Clusters*cs
	w.cache = newWrL2Cache(cs, max(4, min(64, wrL2CacheBytes/cs)))
	if !opt.Compress {
		return w, nil
	}
	if w.comp, err = newWrCompressor(cs, ctype); err != nil {
		return nil, err
	}
	return wrCompressing{w}, nil
}

// wrClusterBits validates a requested cluster size.
func wrClusterBits(opt disk.CreateOptions) (uint32, error) {
	v, given := opt.Options["cluster_size"]
	if !given {
		return DefaultClusterBits, nil
	}
	clusterSize, err := size.Parse(v)
	if err != nil {
		return 0, fmt.Errorf("qcow2: %w: cluster_size=%s: %v", disk.ErrOption, v, err)
	}
	for bits := uint32(MinClusterBits); bits <= MaxClusterBits; bits++ {
		if int64(1)<<bits == clusterSize {
			return bits, nil
		}
	}
	return 0, fmt.Errorf("qcow2: %w: cluster_size=%s: the cluster size must be a power of two from %d to %d bytes",
		disk.ErrOption, v, int64(1)<<MinClusterBits, int64(1)<<MaxClusterBits)
}

// checkSize rounds a virtual size up to a multiple of 512 and checks that
// the L1 table it needs stays within qemu's limit.
func (w *wrImage) checkSize(size int64) (int64, error) {
	if size < 0 || size > MaxVirtualSize {
		return 0, fmt.Errorf("qcow2: %w: virtual size %d out of range 0..%d", disk.ErrUnsupported, size, MaxVirtualSize)
	}
	size = (size + 511) &^ 511
	if w.l1EntriesFor(size)*8 > MaxL1Bytes {
		return 0, fmt.Errorf("qcow2: %w: virtual size %d needs an L1 table larger than %d bytes with %d-byte clusters (use larger clusters)",
			disk.ErrUnsupported, size, MaxL1Bytes, w.clusterSize)
	}
	return size, nil
}

// l1EntriesFor is the number of L1 entries a virtual size needs.
func (w *wrImage) l1EntriesFor(size int64) int64 {
	perL2 := w.l2Entries * w.clusterSize
	return (size + perL2 - 1) / perL2
}

func (w *wrImage) bytesToClusters(n int64) int64 {
	return (n + w.clusterSize - 1) >> w.clusterBits
}

// usable reports why the writer cannot be used, if it cannot.
func (w *wrImage) usable() error {
	if w.closed {
		return errWriterClosed
	}
	return w.err
}

// fail records the first I/O error and returns it.
func (w *wrImage) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return err
}

// allocCluster appends one host cluster and returns its offset.
func (w *wrImage) allocCluster() int64 {
	off := w.end
	w.end += w.clusterSize
	return off
}

// WriteAt writes virtual-disk bytes. New clusters are appended at the end
// of the file; a run of them is written with one pwrite. Unwritten parts of a
// new cluster read as zeros (they lie in a hole past the old end of file).
// Zeros written where nothing is allocated are skipped: those ranges read as
// zeros already. Allocated clusters are updated in place.
func (w *wrImage) WriteAt(p []byte, off int64) (int, error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	if off < 0 || off > w.size || int64(len(p)) > w.size-off {
		return 0, fmt.Errorf("qcow2: write of %d bytes at %d lies outside the virtual disk of %d bytes", len(p), off, w.size)
	}
	cs := w.clusterSize
	for pos := 0; pos < len(p); {
		voff := off + int64(pos)
		within := voff & (cs - 1)
		n := int(min(cs-within, int64(len(p)-pos)))
		seg := p[pos : pos+n]
		host, err := w.hostFor(voff>>w.clusterBits, seg)
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

// hostFor returns the host offset of virtual cluster vc, allocating it
// (and its L2 table) when seg, the data about to be written there, is not
// all zeros. It returns 0 when the cluster is unallocated and may stay so.
func (w *wrImage) hostFor(vc int64, seg []byte) (int64, error) {
	l1i, l2i := vc/w.l2Entries, vc%w.l2Entries
	if w.l1[l1i]&L1OffsetMask == 0 && blockio.IsZero(seg) {
		return 0, nil
	}
	t, err := w.table(l1i, true)
	if err != nil {
		return 0, err
	}
	e := t.entry(l2i)
	if e&EntryCompressed != 0 {
		return 0, fmt.Errorf("qcow2: writing into the compressed cluster at virtual offset %#x is not supported", vc<<w.clusterBits)
	}
	if e&L2OffsetMask != 0 {
		return int64(e & L2OffsetMask), nil
	}
	if blockio.IsZero(seg) {
		return 0, nil
	}
	host := w.allocCluster()
	t.setEntry(l2i, uint64(host)|EntryCopied)
	return host, nil
}

// table returns the L2 table for L1 index l1i from the cache, reading it
// from the file or (when create is set) allocating it if need be. It returns
// nil, nil when the table does not exist and create is not set.
func (w *wrImage) table(l1i int64, create bool) (*wrL2Table, error) {
	if t := w.cache.get(l1i); t != nil {
		return t, nil
	}
	host := int64(w.l1[l1i] & L1OffsetMask)
	if host == 0 && !create {
		return nil, nil
	}
	// Make room first: an evicted table is written out now.
	if err := w.cache.evict(w.f); err != nil {
		return nil, err
	}
	if host == 0 {
		host = w.allocCluster()
		w.l1[l1i] = uint64(host) | EntryCopied
		return w.cache.add(l1i, host, nil)
	}
	return w.cache.add(l1i, host, w.f)
}

// queue adds seg, to be written at host, to the pending run (see
// blockio.RunWriter).
func (w *wrImage) queue(host int64, seg []byte) error {
	if err := w.run.Queue(host, seg); err != nil {
		return fmt.Errorf("qcow2: %w", err)
	}
	return nil
}

func (w *wrImage) flushRun() error {
	if err := w.run.Flush(); err != nil {
		return fmt.Errorf("qcow2: %w", err)
	}
	return nil
}

// Resize changes the virtual size (rounded up to a multiple of 512).
// Growing extends the L1 table, moving it to the end of the file when its
// clusters are full. Shrinking needs allowShrink; it drops the clusters
// beyond the new size, which become free, and zeroes the tail of the last
// cluster kept, so that a later grow reads zeros there.
func (w *wrImage) Resize(size int64, allowShrink bool) error {
	if err := w.usable(); err != nil {
		return err
	}
	newSize, err := w.checkSize(size)
	if err != nil {
		return err
	}
	switch {
	case newSize == w.size:
		return nil
	case newSize > w.size:
		return w.grow(newSize)
	case !allowShrink:
		return fmt.Errorf("qcow2: resize from %d to %d bytes: %w", w.size, newSize, disk.ErrShrink)
	default:
		if err := w.shrink(newSize); err != nil {
			return w.fail(err)
		}
		return nil
	}
}

func (w *wrImage) grow(newSize int64) error {
	need := w.l1EntriesFor(newSize)
	if need > int64(len(w.l1)) {
		clusters := w.bytesToClusters(need * 8)
		switch {
		case clusters <= w.l1Clusters:
			// The reserved clusters have room.
		case w.l1Offset+w.l1Clusters*w.clusterSize == w.end:
			// The L1 table is the last thing in the file: grow it in place.
			w.end = w.l1Offset + clusters*w.clusterSize
			w.l1Clusters = clusters
		default:
			// Move it to the end; its old clusters become free.
			w.free.add(w.l1Offset>>w.clusterBits, w.l1Clusters)
			w.l1Offset = w.end
			w.l1Clusters = clusters
			w.end += clusters * w.clusterSize
		}
		w.l1 = append(w.l1, make([]uint64, need-int64(len(w.l1)))...)
	}
	w.size = newSize
	return nil
}

// shrink drops every cluster at or beyond the new size. The L1 table keeps
// its size (as qemu-img resize --shrink does); its entries beyond the new
// size are cleared.
func (w *wrImage) shrink(newSize int64) error {
	cs := w.clusterSize
	keep := (newSize + cs - 1) >> w.clusterBits // virtual clusters kept
	if err := w.streams.flush(w.f); err != nil {
		return err
	}
	w.nextByte = 0 // the cluster of the last stream may be freed
	for l1i := keep / w.l2Entries; l1i < int64(len(w.l1)); l1i++ {
		if w.l1[l1i]&L1OffsetMask == 0 {
			continue
		}
		t, err := w.table(l1i, false)
		if err != nil {
			return err
		}
		first := max(0, keep-l1i*w.l2Entries) // first entry dropped in this table
		for i := first; i < w.l2Entries; i++ {
			if e := t.entry(i); e&EntryCompressed != 0 {
				w.dropStream(e)
				t.setEntry(i, 0)
			} else if host := int64(e & L2OffsetMask); host != 0 {
				w.free.add(host>>w.clusterBits, 1)
				t.setEntry(i, 0)
			}
		}
		if first == 0 {
			// The whole table goes: forget it without writing it.
			w.cache.drop(l1i)
			w.free.add(int64(w.l1[l1i]&L1OffsetMask)>>w.clusterBits, 1)
			w.l1[l1i] = 0
		}
	}
	// Zero the tail of the last cluster kept, if it is allocated and partial.
	if tail := newSize & (cs - 1); tail != 0 {
		vc := newSize >> w.clusterBits
		t, err := w.table(vc/w.l2Entries, false)
		if err != nil {
			return err
		}
		if e := w.entryIn(t, vc); e&EntryCompressed != 0 {
			if err := w.cutStream(t, vc, tail); err != nil {
				return err
			}
		} else if t != nil {
			if host := int64(t.entry(vc%w.l2Entries) & L2OffsetMask); host != 0 {
				if w.zero == nil {
					w.zero = make([]byte, cs)
				}
				if _, err := w.f.WriteAt(w.zero[:cs-tail], host+tail); err != nil {
					return fmt.Errorf("qcow2: zeroing the tail of host cluster %#x: %w", host, err)
				}
			}
		}
	}
	w.size = newSize
	return w.trimEnd()
}

// trimEnd gives back the free clusters at the end of the file, truncating
// the file so that clusters allocated there later read as zeros again.
func (w *wrImage) trimEnd() error {
	last, ok := w.free.last()
	if !ok || (last.start+last.n)<<w.clusterBits != w.end {
		return nil
	}
	w.free.removeLast()
	w.end = last.start << w.clusterBits
	st, err := w.f.Stat()
	if err != nil {
		return fmt.Errorf("qcow2: %w", err)
	}
	if st.Size() > w.end {
		if err := w.f.Truncate(w.end); err != nil {
			return fmt.Errorf("qcow2: %w", err)
		}
	}
	return nil
}

// Close writes the L2 tables still in memory, the refcount structures, the
// L1 table and finally the header. It neither syncs nor closes the file.
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
	if err := w.streams.flush(w.f); err != nil {
		return err
	}
	if err := w.cache.flush(w.f); err != nil {
		return err
	}
	rc, err := w.writeRefcounts()
	if err != nil {
		return err
	}
	if err := w.writeL1(); err != nil {
		return err
	}
	// The file must reach the end of the last cluster in use, except that,
	// like qemu, it may end with the L1 table's last entry.
	fileEnd := rc.end
	if l1Bytes := int64(len(w.l1)) * 8; w.l1Offset+w.l1Clusters*w.clusterSize == rc.end && l1Bytes > 0 {
		fileEnd = w.l1Offset + l1Bytes
	}
	st, err := w.f.Stat()
	if err != nil {
		return fmt.Errorf("qcow2: %w", err)
	}
	if st.Size() < fileEnd {
		if err := w.f.Truncate(fileEnd); err != nil {
			return fmt.Errorf("qcow2: %w", err)
		}
	}
	// The header, last.
	h := Header{
		Version:               3,
		ClusterBits:           w.clusterBits,
		Size:                  uint64(w.size),
		L1Size:                uint32(len(w.l1)),
		RefcountTableOffset:   uint64(rc.tableOffset),
		RefcountTableClusters: uint32(rc.tableClusters),
		RefcountOrder:         wrRefcountOrder,
		HeaderLength:          headerV3WithCompression,
		CompressionType:       w.ctype,
	}
	if w.ctype != CompressionDeflate {
		h.IncompatibleFeatures |= IncompatCompression
	}
	if len(w.l1) > 0 {
		h.L1TableOffset = uint64(w.l1Offset)
	}
	if _, err := w.f.WriteAt(h.Marshal(), 0); err != nil {
		return fmt.Errorf("qcow2: writing the header: %w", err)
	}
	return nil
}

// writeL1 writes the L1 table, a piece at a time (it may be 32 MiB).
func (w *wrImage) writeL1() error {
	buf := make([]byte, 0, min(len(w.l1)*8, 1<<20))
	for i := 0; i < len(w.l1); {
		buf = buf[:0]
		for ; i < len(w.l1) && len(buf) < cap(buf); i++ {
			buf = binary.BigEndian.AppendUint64(buf, w.l1[i])
		}
		if _, err := w.f.WriteAt(buf, w.l1Offset+int64(i)*8-int64(len(buf))); err != nil {
			return fmt.Errorf("qcow2: writing the L1 table: %w", err)
		}
	}
	return nil
}

// errRefcountTableTooLarge: more refcount blocks than qemu's cap on the
// refcount table allows (only reachable with tiny clusters and huge files).
var errRefcountTableTooLarge = errors.New("refcount table would exceed qemu's limit")
