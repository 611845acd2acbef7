package vdi

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// The writer lays an image out as VirtualBox does: the header in the first
// sector, the block map from 0x200, the data blocks from the next MiB
// boundary (VDI_DATA_ALIGN), so that every block is 1 MiB aligned in the
// file. A dynamic image appends a block when a write first touches it; a
// static one has every block in place (block i at index i) from the start,
// sparse in the file. The block map stays in memory until Close.

// text is what qemu-img and VirtualBox ignore; it says who wrote the image.
const text = "<<< gen-vm-image VDI Disk Image >>>\n"

// maxWriteSize bounds the images Create makes: the block map is held in
// memory (4 bytes a MiB: 256 MiB at this size).
const maxWriteSize = disk.DefaultMaxVirtualSize

var crc32c = crc32.MakeTable(crc32.Castagnoli)

var errWriterClosed = fmt.Errorf("vdi: writer: %w", os.ErrClosed)

type writer struct {
	f          *os.File
	static     bool
	size       int64 // virtual size, a multiple of 512
	bmap       []uint32
	allocated  uint32
	offsetData int64
	stored     bool // some data was written: the data's place is fixed
	// content hashes what is written, in order, so that the image's UUIDs
	// follow from the spec and the content, never from chance or the clock.
	content *blockio.Fingerprint
	err     error
	closed  bool
}

// Create starts a VDI image of size bytes (rounded up to a sector) in f,
// which it empties: dynamic, or static with static=on. The image is valid
// only after Close, which neither syncs nor closes f.
func Create(f *os.File, size int64, opt disk.CreateOptions) (disk.Writer, error) {
	static := false
	switch v := opt.Options["static"]; v {
	case "", "off":
	case "on":
		static = true
	default:
		return nil, fmt.Errorf("vdi: %w: static=%s: static takes on, off", disk.ErrOption, v)
	}
	if size < 0 || size > maxWriteSize {
		return nil, fmt.Errorf("vdi: %w: virtual size %d out of range 0..%d", disk.ErrUnsupported, size, int64(maxWriteSize))
	}
	size = (size + sectorSize - 1) &^ (sectorSize - 1)
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("vdi: create: %w", err)
	}
	if st.Size() != 0 {
		if err := f.Truncate(0); err != nil {
			return nil, fmt.Errorf("vdi: create: %w", err)
		}
	}
	w := &writer{f: f, static: static, size: size, content: blockio.NewFingerprint(sha256.New())}
	blocks := (size + blockSize - 1) / blockSize
	w.offsetData = dataOffset(blocks)
	w.bmap = make([]uint32, blocks)
	w.grow(0, blocks)
	fmt.Fprintf(w.content, "vdi static=%t size=%d\n", static, size)
	return w, nil
}

// dataOffset is where the data of an image of blocks blocks starts.
func dataOffset(blocks int64) int64 {
	end := int64(headerBytes) + blocks*4
	return (end + dataAlign - 1) / dataAlign * dataAlign
}

// grow gives blocks [from, to) of the map their initial entries.
func (w *writer) grow(from, to int64) {
	for i := from; i < to; i++ {
		if w.static {
			w.bmap[i] = uint32(i)
		} else {
			w.bmap[i] = unallocated
		}
	}
	if w.static {
		w.allocated = uint32(to)
	}
}

func (w *writer) usable() error {
	if w.closed {
		return errWriterClosed
	}
	return w.err
}

func (w *writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return err
}

// WriteAt writes virtual-disk bytes. Zeros written where no block is
// stored are skipped: they read as zeros already. A new block is appended
// after the last; what is not written of it lies in a hole and reads as
// zeros.
func (w *writer) WriteAt(p []byte, off int64) (int, error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	if off < 0 || off > w.size || int64(len(p)) > w.size-off {
		return 0, fmt.Errorf("vdi: write of %d bytes at %d lies outside the virtual disk of %d bytes", len(p), off, w.size)
	}
	defer w.content.Add(p, off)()

	// Pieces whose blocks follow each other in the file go out in one write.
	run := blockio.RunWriter{W: w.f}
	for pos := 0; pos < len(p); {
		voff := off + int64(pos)
		b := voff / blockSize
		within := voff % blockSize
		k := int(min(int64(len(p)-pos), blockSize-within))
		e := w.bmap[b]
		if e >= discarded {
			if blockio.IsZero(p[pos : pos+k]) {
				pos += k // not written: the next piece starts a run of its own
				continue
			}
			e = w.allocated
			w.bmap[b] = e
			w.allocated++
		}
		host := w.offsetData + int64(e)*blockSize + within
		w.stored = true
		if err := run.Queue(host, p[pos:pos+k]); err != nil {
			return pos, w.fail(fmt.Errorf("vdi: %w", err))
		}
		pos += k
	}
	if err := run.Flush(); err != nil {
		return 0, w.fail(fmt.Errorf("vdi: %w", err))
	}
	return len(p), nil
}

// Resize changes the virtual size. Growing needs the block map to fit
// below the data, which starts at a MiB boundary (a map of 256 GiB fits
// in the first MiB), unless nothing has been stored yet. Shrinking drops
// the blocks beyond the new end and moves the last stored blocks into
// their places, so that the block indexes stay below the block count.
func (w *writer) Resize(size int64, allowShrink bool) error {
	if err := w.usable(); err != nil {
		return err
	}
	if size < 0 || size > maxWriteSize {
		return fmt.Errorf("vdi: %w: virtual size %d out of range 0..%d", disk.ErrUnsupported, size, int64(maxWriteSize))
	}
	size = (size + sectorSize - 1) &^ (sectorSize - 1)
	if size < w.size && !allowShrink {
		return fmt.Errorf("vdi: %w: from %d to %d bytes", disk.ErrShrink, w.size, size)
	}
	fmt.Fprintf(w.content, "resize %d\n", size)
	oldBlocks, blocks := int64(len(w.bmap)), (size+blockSize-1)/blockSize
	switch {
	case blocks > oldBlocks:
		if need := dataOffset(blocks); need > w.offsetData {
			if w.stored {
				return fmt.Errorf("vdi: %w: growing to %d bytes needs a block map larger than the %d bytes before the data", disk.ErrUnsupported, size, w.offsetData-headerBytes)
			}
			w.offsetData = need
		}
		w.bmap = append(w.bmap, make([]uint32, blocks-oldBlocks)...)
		w.grow(oldBlocks, blocks)
	case blocks < oldBlocks:
		if err := w.shrinkMap(blocks); err != nil {
			return err
		}
	}
	if blocks < oldBlocks {
		// Blocks appended or put back later must lie in a hole.
		if err := w.f.Truncate(w.offsetData + int64(w.allocated)*blockSize); err != nil {
			return w.fail(fmt.Errorf("vdi: shrinking the file: %w", err))
		}
	}
	// What lies beyond the new end in its last block must read as zeros
	// if the disk grows again.
	if tail := size % blockSize; size < w.size && tail != 0 {
		if e := w.bmap[size/blockSize]; e < discarded {
			host := w.offsetData + int64(e)*blockSize
			if err := w.zeroHost(host+tail, blockSize-tail); err != nil {
				return err
			}
		}
	}
	w.size = size
	return nil
}

// shrinkMap drops the map entries from blocks on and compacts the stored
// blocks into indexes 0..allocated-1.
func (w *writer) shrinkMap(blocks int64) error {
	dropped := 0
	for _, e := range w.bmap[blocks:] {
		if e < discarded {
			dropped++
		}
	}
	w.bmap = w.bmap[:blocks]
	if w.static {
		w.allocated = uint32(blocks)
		return nil
	}
	count := w.allocated - uint32(dropped)
	// Indexes below count that no entry uses any more, and entries that
	// point at or beyond count: each of the latter moves into one of the
	// former.
	used := make([]bool, count)
	var movers []int
	for i, e := range w.bmap {
		if e >= discarded {
			continue
		}
		if e < count {
			used[e] = true
		} else {
			movers = append(movers, i)
		}
	}
	free := 0
	buf := make([]byte, blockSize)
	for _, i := range movers {
		for used[free] {
			free++
		}
		from := w.offsetData + int64(w.bmap[i])*blockSize
		to := w.offsetData + int64(free)*blockSize
		if err := blockio.ReadPadded(w.f, w.offsetData+int64(w.allocated)*blockSize, buf, from); err != nil {
			return w.fail(fmt.Errorf("vdi: moving block %d: %w", i, err))
		}
		if _, err := w.f.WriteAt(buf, to); err != nil {
			return w.fail(fmt.Errorf("vdi: moving block %d: %w", i, err))
		}
		used[free] = true
		w.bmap[i] = uint32(free)
	}
	w.allocated = count
	return nil
}

// zeroHost writes n zero bytes at host offset off.
func (w *writer) zeroHost(off, n int64) error {
	zero := make([]byte, min(n, 64<<10))
	for n > 0 {
		k := min(n, int64(len(zero)))
		if _, err := w.f.WriteAt(zero[:k], off); err != nil {
			return w.fail(fmt.Errorf("vdi: zeroing at %#x: %w", off, err))
		}
		off += k
		n -= k
	}
	return nil
}

// Close writes the header and the block map, and sets the file's length to
// the end of the last block.
func (w *writer) Close() error {
	if w.closed {
		return errWriterClosed
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	imageType := uint32(typeDynamic)
	if w.static {
		imageType = typeStatic
	}
	le := binary.LittleEndian
	for i, e := range w.bmap {
		if i%(64<<10) == 0 {
			w.content.Write([]byte("map"))
		}
		var b [4]byte
		le.PutUint32(b[:], e)
		w.content.Write(b[:])
	}
	sum := w.content.Sum(nil)

	h := make([]byte, headerBytes)
	copy(h, text)
	le.PutUint32(h[offSignature:], signature)
	le.PutUint32(h[offVersion:], version11)
	le.PutUint32(h[offHeaderSize:], headerSize)
	le.PutUint32(h[offImageType:], imageType)
	le.PutUint32(h[offBmap:], headerBytes)
	le.PutUint32(h[offData:], uint32(w.offsetData))
	le.PutUint32(h[offSectorSize:], sectorSize)
	le.PutUint64(h[offDiskSize:], uint64(w.size))
	le.PutUint32(h[offBlockSize:], blockSize)
	le.PutUint32(h[offBlocks:], uint32(len(w.bmap)))
	le.PutUint32(h[offAllocated:], w.allocated)
	// VirtualBox's creation and modification UUIDs (its media registry
	// tells disks apart by them), derived from the content; the linkage and
	// parent UUIDs stay null: no parent.
	putUUID(h[offUUIDCreate:], uuidFrom(sum, "create"))
	putUUID(h[offUUIDModify:], uuidFrom(sum, "modify"))
	if _, err := w.f.WriteAt(h, 0); err != nil {
		return fmt.Errorf("vdi: writing the header: %w", err)
	}
	const chunk = 64 << 10 // entries per write
	buf := make([]byte, 4*min(chunk, len(w.bmap)))
	for i := 0; i < len(w.bmap); i += chunk {
		n := min(chunk, len(w.bmap)-i)
		for j := range n {
			le.PutUint32(buf[4*j:], w.bmap[i+j])
		}
		if _, err := w.f.WriteAt(buf[:4*n], headerBytes+int64(i)*4); err != nil {
			return fmt.Errorf("vdi: writing the block map: %w", err)
		}
	}
	if err := w.f.Truncate(w.offsetData + int64(w.allocated)*blockSize); err != nil {
		return fmt.Errorf("vdi: setting the file's length: %w", err)
	}
	return nil
}

// uuidFrom makes a name-based (version 5 style) UUID out of a digest and a
// label, in RFC 4122 byte order.
func uuidFrom(sum []byte, label string) [16]byte {
	d := sha256.Sum256(append(append([]byte(label), 0), sum...))
	var u [16]byte
	copy(u[:], d[:16])
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return u
}

// putUUID stores u as VirtualBox does (IPRT's RTUUID): the first three
// fields little-endian.
func putUUID(b []byte, u [16]byte) {
	b[0], b[1], b[2], b[3] = u[3], u[2], u[1], u[0]
	b[4], b[5] = u[5], u[4]
	b[6], b[7] = u[7], u[6]
	copy(b[8:16], u[8:])
}
