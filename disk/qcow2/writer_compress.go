package qcow2

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/inflate"
)

// Compressed clusters (qcow2.txt "Compressed Clusters Descriptor"), written
// as qemu-img convert -c writes them (block/qcow2.c
// qcow2_co_pwritev_compressed_task, qcow2-refcount.c qcow2_alloc_bytes):
//
//   - a cluster is compressed whole; the last cluster of an image that is
//     not a multiple of the cluster size is padded with zeros first;
//   - a compressed stream that is not shorter than the cluster is stored as
//     a plain cluster instead;
//   - streams are packed byte after byte at the end of the file; one may
//     run into the next host cluster when that is the next one allocated
//     (an L2 table allocated between them makes the next stream start on a
//     new cluster);
//   - each stream adds one to the refcount of every host cluster it
//     touches, and its L2 entry never has the COPIED bit.
//
// Deflate streams are raw (no zlib header) and use a 4 KiB window: qemu
// inflates with windowBits -12 (FORMATS.md), so no distance may exceed 4096.

// deflateWindow is the window qemu's inflateInit2(-12) allows.
const deflateWindow = 4096

// streamBufSize is how many bytes of compressed streams are gathered
// before one pwrite.
const streamBufSize = 1 << 20

// maxZstdEncoders bounds the zstd encoder states (and so the cores zstd
// compresses on): 16 cores compress faster than a disk writes.
const maxZstdEncoders = 16

// maxStreamRefcount is the most streams that may share a host cluster:
// the largest 16-bit refcount (qemu starts a new cluster there too).
const maxStreamRefcount = 1<<wrRefcountBits - 1

// compressionType reads the compression_type option.
func compressionType(opt disk.CreateOptions) (uint8, error) {
	switch v := opt.Options["compression_type"]; v {
	case "", "zlib":
		return CompressionDeflate, nil
	case "zstd":
		return CompressionZstd, nil
	default:
		return 0, fmt.Errorf("qcow2: %w: compression_type=%s: compression_type takes zlib, zstd", disk.ErrOption, v)
	}
}

// wrCompressor compresses clusters; safe for concurrent use: encoders are
// pooled, and one never carries anything from one cluster to the next, so
// the bytes depend on the cluster alone.
type wrCompressor struct {
	clusterSize int64
	zstd        bool
	encoders    sync.Pool // *encoder
	zstdEnc     *zstd.Encoder
	padded      sync.Pool // *[]byte: a cluster, for a short last unit
}

// encoder is one worker's deflate state and output buffer.
type encoder struct {
	w   *flate.Writer // nil until deflate is used
	out bytes.Buffer
}

func newWrCompressor(clusterSize int64, ctype uint8) (*wrCompressor, error) {
	c := &wrCompressor{clusterSize: clusterSize, zstd: ctype == CompressionZstd}
	c.padded.New = func() any { b := make([]byte, clusterSize); return &b }
	if c.zstd {
		// libzstd's defaults, as qemu uses them: level 3, no checksum.
		// EncodeAll is safe for concurrent use, with one encoder state (1.5
		// MiB of tables) per concurrent call: at most maxZstdEncoders.
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderCRC(false),
			zstd.WithEncoderConcurrency(min(runtime.GOMAXPROCS(0), maxZstdEncoders)))
		if err != nil {
			return nil, fmt.Errorf("qcow2: zstd: %w", err)
		}
		c.zstdEnc = enc
	}
	return c, nil
}

// compress returns the stored form of one cluster of data: the compressed
// stream when it is shorter than a cluster, else the cluster itself,
// padded to a whole cluster.
func (c *wrCompressor) compress(unit []byte) ([]byte, error) {
	cs := c.clusterSize
	if int64(len(unit)) > cs {
		return nil, fmt.Errorf("qcow2: a unit of %d bytes is more than a cluster", len(unit))
	}
	in := unit
	if int64(len(unit)) < cs {
		bp := c.padded.Get().(*[]byte)
		defer c.padded.Put(bp)
		in = *bp
		copy(in, unit)
		clear(in[len(unit):])
	}
	if looksRandom(in) {
		return c.plain(unit, in), nil
	}
	d, _ := c.encoders.Get().(*encoder)
	if d == nil {
		d = &encoder{}
	}
	defer c.encoders.Put(d)
	d.out.Reset()
	if c.zstd {
		// Into a pooled buffer, then copied to its size: the streams wait in
		// the converter's window, which must not hold a cluster for each.
		b := c.zstdEnc.EncodeAll(in, d.out.AvailableBuffer())
		d.out.Write(b)
	} else {
		if d.w == nil {
			w, err := flate.NewWriterWindow(nil, deflateWindow)
			if err != nil {
				return nil, fmt.Errorf("qcow2: deflate: %w", err)
			}
			d.w = w
		}
		d.w.Reset(&d.out)
		if _, err := d.w.Write(in); err != nil {
			return nil, fmt.Errorf("qcow2: deflate: %w", err)
		}
		if err := d.w.Close(); err != nil {
			return nil, fmt.Errorf("qcow2: deflate: %w", err)
		}
	}
	if int64(d.out.Len()) < cs {
		return bytes.Clone(d.out.Bytes()), nil
	}
	return c.plain(unit, in), nil
}

// plain is the stored form of a cluster that does not compress: a whole
// cluster is the caller's own buffer, which the converter keeps until the
// cluster is stored; a short last one, padded, a copy.
func (c *wrCompressor) plain(unit, padded []byte) []byte {
	if len(unit) == len(padded) {
		return unit
	}
	return bytes.Clone(padded)
}

// looksRandom reports whether b's bytes are spread so evenly that it is
// not worth compressing (already compressed or encrypted data): the sum of
// the squared byte counts is within 0.7% of what uniform bytes give, i.e.
// a collision entropy above 7.99 bits a byte. Random data of 64 KiB comes
// within 0.4%; small clusters never pass (their counts vary too much), so
// they are always tried. Integers only: the decision, and so the output,
// is the same on every machine. Trying zstd on such data cost a third of
// its time, for nothing.
func looksRandom(b []byte) bool {
	if len(b) < 16<<10 {
		return false
	}
	var h0, h1, h2, h3 [256]uint32
	i := 0
	for ; i+4 <= len(b); i += 4 {
		h0[b[i]]++
		h1[b[i+1]]++
		h2[b[i+2]]++
		h3[b[i+3]]++
	}
	for ; i < len(b); i++ {
		h0[b[i]]++
	}
	var sum uint64
	for k := range h0 {
		c := uint64(h0[k] + h1[k] + h2[k] + h3[k])
		sum += c * c
	}
	n := uint64(len(b))
	return sum*256*1000 <= n*n*1007
}

// decompress is the inverse, for rewriting a cluster a shrink cuts.
func (c *wrCompressor) decompress(dst, stored []byte) error {
	if c.zstd {
		return inflate.DecodeZstd(dst, stored)
	}
	return inflate.Decode(dst, stored)
}

// writeStored stores what compress returned for the cluster at off: a
// compressed stream, packed after the previous one, or (a whole cluster)
// a plain cluster. Each cluster is stored once, in increasing offset
// order.
func (w *wrImage) writeStored(off int64, stored []byte) error {
	if err := w.usable(); err != nil {
		return err
	}
	cs := w.clusterSize
	if off < 0 || off >= w.size || off&(cs-1) != 0 {
		return fmt.Errorf("qcow2: stored cluster at %d: not a cluster of the virtual disk of %d bytes", off, w.size)
	}
	if int64(len(stored)) >= cs {
		if int64(len(stored)) != cs {
			return fmt.Errorf("qcow2: stored cluster at %d: %d bytes", off, len(stored))
		}
		vc := off >> w.clusterBits
		t, err := w.table(vc/w.l2Entries, true)
		if err != nil {
			return w.fail(err)
		}
		if t.entry(vc%w.l2Entries) != 0 {
			return fmt.Errorf("qcow2: cluster at %d is stored twice", off)
		}
		// Whatever the stream ended in stays its own: a plain cluster is
		// appended after it.
		host := w.allocCluster()
		t.setEntry(vc%w.l2Entries, uint64(host)|EntryCopied)
		if err := w.streams.write(w.f, host, stored); err != nil {
			return w.fail(err)
		}
		return nil
	}
	if len(stored) == 0 {
		return fmt.Errorf("qcow2: stored cluster at %d: empty", off)
	}
	vc := off >> w.clusterBits
	// The L2 table first, as qemu allocates it: a new one breaks the run of
	// streams.
	t, err := w.table(vc/w.l2Entries, true)
	if err != nil {
		return w.fail(err)
	}
	if t.entry(vc%w.l2Entries) != 0 {
		return fmt.Errorf("qcow2: cluster at %d is stored twice", off)
	}
	host := w.allocBytes(int64(len(stored)))
	t.setEntry(vc%w.l2Entries, w.compressedEntry(host, int64(len(stored))))
	if err := w.streams.write(w.f, host, stored); err != nil {
		return w.fail(err)
	}
	return nil
}

// compressedEntry is the L2 entry of a stream of n bytes at host
// (qcow2.txt "Compressed Clusters Descriptor": the count is of the sectors
// after the first one the stream touches).
func (w *wrImage) compressedEntry(host, n int64) uint64 {
	d := newCompressedDescriptor(w.clusterBits)
	sectors := uint64((host+n-1)>>9 - host>>9)
	return EntryCompressed | sectors<<d.sizeShift | uint64(host)
}

// allocBytes finds room for a stream of n (< cluster size) bytes after the
// previous one, as qemu's qcow2_alloc_bytes does, and counts its
// references.
func (w *wrImage) allocBytes(n int64) int64 {
	cs := w.clusterSize
	off := w.nextByte
	if off != 0 && w.refcount.get(off>>w.clusterBits) >= maxStreamRefcount {
		off = 0
	}
	free := cs - off&(cs-1)
	if off == 0 || free < n {
		next := w.allocCluster()
		if off == 0 || (off+cs-1)&^(cs-1) != next {
			off = next
		}
	}
	for c := off >> w.clusterBits; c <= (off+n-1)>>w.clusterBits; c++ {
		w.refcount.inc(c)
	}
	w.nextByte = off + n
	if w.nextByte&(cs-1) == 0 {
		w.nextByte = 0
	}
	return off
}

// entryIn is the L2 entry of virtual cluster vc in t, the table that holds
// it (nil: none, so 0).
func (w *wrImage) entryIn(t *wrL2Table, vc int64) uint64 {
	if t == nil {
		return 0
	}
	return t.entry(vc % w.l2Entries)
}

// dropStream forgets the stream of a compressed entry: the clusters it
// alone used become free.
func (w *wrImage) dropStream(e uint64) {
	host, n := newCompressedDescriptor(w.clusterBits).decode(e)
	for c := int64(host) >> w.clusterBits; c <= int64(host+n-1)>>w.clusterBits; c++ {
		if w.refcount.dec(c) {
			w.free.add(c, 1)
		}
	}
}

// cutStream zeroes the bytes from tail on of the compressed cluster vc
// (the last one a shrink keeps): its stream is read back, decompressed,
// cut and stored again, so that a later grow reads zeros there.
func (w *wrImage) cutStream(t *wrL2Table, vc, tail int64) error {
	e := w.entryIn(t, vc)
	host, n := newCompressedDescriptor(w.clusterBits).decode(e)
	in := make([]byte, n)
	// The stream's last sector may reach past the end of the file.
	k, err := w.f.ReadAt(in, int64(host))
	if k < len(in) && (k == 0 || !errors.Is(err, io.EOF)) {
		return fmt.Errorf("qcow2: reading back the compressed cluster at host offset %#x: %v", host, err)
	}
	in = in[:k]
	cluster := make([]byte, w.clusterSize)
	if err := w.comp.decompress(cluster, in); err != nil {
		return fmt.Errorf("qcow2: reading back the compressed cluster at host offset %#x: %w", host, err)
	}
	clear(cluster[tail:])
	w.dropStream(e)
	t.setEntry(vc%w.l2Entries, 0)
	stored, err := w.comp.compress(cluster)
	if err != nil {
		return err
	}
	return w.writeStored(vc<<w.clusterBits, stored)
}

// wrStreamRefcounts holds the refcounts of the host clusters that hold
// compressed streams (the only ones that can differ from 1): two bytes per
// cluster from the first such cluster to the last.
type wrStreamRefcounts struct {
	first  int64 // cluster index of counts[0]
	counts []uint16
}

func (r *wrStreamRefcounts) get(c int64) uint16 {
	if i := c - r.first; r.counts != nil && i >= 0 && i < int64(len(r.counts)) {
		return r.counts[i]
	}
	return 0
}

func (r *wrStreamRefcounts) inc(c int64) {
	if r.counts == nil {
		r.first = c
	}
	i := c - r.first
	for int64(len(r.counts)) <= i {
		r.counts = append(r.counts, 0)
	}
	r.counts[i]++
}

// dec drops one reference and reports whether the cluster is now unused.
func (r *wrStreamRefcounts) dec(c int64) bool {
	i := c - r.first
	r.counts[i]--
	return r.counts[i] == 0
}

// wrStreamBuf gathers bytes bound for one contiguous host range, so that
// many small streams cost one pwrite.
type wrStreamBuf struct {
	host int64
	buf  []byte
}

func (b *wrStreamBuf) write(f interface {
	WriteAt([]byte, int64) (int, error)
}, host int64, p []byte) error {
	if len(b.buf) > 0 && (b.host+int64(len(b.buf)) != host || len(b.buf)+len(p) > streamBufSize) {
		if err := b.flush(f); err != nil {
			return err
		}
	}
	if len(b.buf) == 0 {
		if len(p) >= streamBufSize {
			if _, err := f.WriteAt(p, host); err != nil {
				return fmt.Errorf("qcow2: writing data at host offset %#x: %w", host, err)
			}
			return nil
		}
		if b.buf == nil {
			b.buf = make([]byte, 0, streamBufSize)
		}
		b.host = host
	}
	b.buf = append(b.buf, p...)
	return nil
}

func (b *wrStreamBuf) flush(f interface {
	WriteAt([]byte, int64) (int, error)
}) error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := f.WriteAt(b.buf, b.host)
	b.buf = b.buf[:0]
	if err != nil {
		return fmt.Errorf("qcow2: writing compressed data at host offset %#x: %w", b.host, err)
	}
	return nil
}
