package vhdx

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/bits"
	"os"
	"unicode/utf16"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
	"github.com/ucphhpc/gen-vm-image-go/size"
)

// The writer lays an image out as qemu-img create does, every region
// MiB-aligned as Windows expects ([MS-VHDX] 2.1):
//
//	0        file identifier, headers at 64 and 128 KiB, region tables at 192 and 256 KiB
//	1 MiB    the log (log_size, 1 MiB by default): all zeros, and no log GUID: empty
//	then     the metadata region (1 MiB): its table, then the items at 64 KiB
//	then     the BAT, rounded up to a MiB
//	then     payload blocks, appended in the order writes reach them (dynamic),
//	         or all of them in order, as a hole the writes fill (fixed)
//
// Everything but the payload is written at Close. Nothing random or
// clock-derived reaches the file: the GUIDs are hashed from the options,
// the size and the data written.

const (
	metaRegionSize  = mib
	metaItemsOffset = 64 << 10
	creator         = "gen-vm-image"
	logicalSector   = 512
	physicalSector  = 4096
	defaultLogSize  = mib
	maxLogSize      = 4096 * mib // the header holds the log length in 32 bits
)

// CreateOptions are the -o options Create takes, as qemu-img spells them.
var CreateOptions = []disk.Option{
	{Name: "subformat", Help: "dynamic (blocks are allocated as data is written) or fixed (every block allocated)", Values: []string{"dynamic", "fixed"}, Default: "dynamic"},
	{Name: "block_size", Help: "the payload block size: a power of two from 1M to 256M; 0 chooses by size as qemu-img does (8M up to 1G, 16M up to 100G, 32M up to 32T, else 64M)", Default: "0"},
	{Name: "log_size", Help: "the log size: a multiple of 1M, at least 1M", Default: "1M"},
}

// params are the options of an image, validated.
type params struct {
	fixed     bool
	blockSize int64 // 0: by size
	logSize   int64
}

func parseOptions(opt disk.CreateOptions) (params, error) {
	p := params{fixed: opt.Options["subformat"] == "fixed", logSize: defaultLogSize}
	if v, ok := opt.Options["block_size"]; ok {
		n, err := size.Parse(v)
		if err != nil {
			return p, fmt.Errorf("vhdx: %w: block_size=%s: %v", disk.ErrOption, v, err)
		}
		if n != 0 && (n < minBlock || n > maxBlock || bits.OnesCount64(uint64(n)) != 1) {
			return p, fmt.Errorf("vhdx: %w: block_size=%s: the block size must be 0 (by size) or a power of two from 1M to 256M", disk.ErrOption, v)
		}
		p.blockSize = n
	}
	if v, ok := opt.Options["log_size"]; ok {
		n, err := size.Parse(v)
		if err != nil {
			return p, fmt.Errorf("vhdx: %w: log_size=%s: %v", disk.ErrOption, v, err)
		}
		if n < mib || n%mib != 0 || n >= maxLogSize {
			return p, fmt.Errorf("vhdx: %w: log_size=%s: the log size must be a multiple of 1M, from 1M to 4095M", disk.ErrOption, v)
		}
		p.logSize = n
	}
	return p, nil
}

// blockSizeFor is qemu-img's choice of block size for a virtual size
// (block/vhdx.c vhdx_co_create).
func blockSizeFor(size int64) int64 {
	switch {
	case size > 32<<40:
		return 64 * mib
	case size > 100<<30:
		return 32 * mib
	case size > 1<<30:
		return 16 * mib
	}
	return 8 * mib
}

// BlockSize is the granularity the converter detects zeros in: a MiB,
// which divides every block size. A zero MiB inside an allocated block is
// left a hole in the file, which reads as zeros.
func BlockSize(disk.CreateOptions) int64 { return mib }

// wrImage is the VHDX disk.Writer.
type wrImage struct {
	f         *os.File
	p         params
	size      int64 // virtual size, a multiple of 512
	blockSize int64
	metaOff   int64
	batOff    int64 // the BAT region reserved at Create
	batLen    int64
	dataStart int64
	blocks    []int64 // host offset of each payload block; 0: not allocated
	end       int64   // first byte after the allocated blocks (MiB-aligned)
	content   *blockio.Fingerprint
	err       error
	closed    bool
}

// Create starts a new VHDX image of the given virtual size (rounded up to
// a multiple of 512 bytes, as qemu-img does) in f, which it truncates. The
// image is valid only after Close; Close neither syncs nor closes f.
func Create(f *os.File, size int64, opt disk.CreateOptions) (disk.Writer, error) {
	p, err := parseOptions(opt)
	if err != nil {
		return nil, err
	}
	if size < 0 || size > disk.DefaultMaxVirtualSize {
		return nil, fmt.Errorf("vhdx: %w: virtual size %d out of range 0..%d (64 TiB)", disk.ErrUnsupported, size, disk.DefaultMaxVirtualSize)
	}
	size = (size + logicalSector - 1) &^ (logicalSector - 1)
	w := &wrImage{f: f, p: p, size: size, blockSize: p.blockSize, content: blockio.NewFingerprint(sha256.New())}
	if w.blockSize == 0 {
		w.blockSize = blockSizeFor(size)
	}
	if err := w.checkBAT(size); err != nil {
		return nil, err
	}
	w.metaOff = mib + p.logSize
	w.batOff = w.metaOff + metaRegionSize
	w.batLen = max(mib, roundMiB(w.batEntries(size)*8)) // a region is never empty
	if size == 0 {
		// qemu counts the entries of an empty disk with a 32-bit
		// underflow (block/vhdx.c vhdx_calc_bat_entries) and refuses a
		// BAT region smaller than that: give it one, as a hole.
		w.batLen = roundMiB(int64(uint32(0xffffffff)>>bits.TrailingZeros64(uint64(w.chunkRatio()))) * 8)
	}
	w.dataStart = w.batOff + w.batLen
	w.end = w.dataStart
	w.blocks = make([]int64, w.dataBlocks(size))
	// Only a file that is not empty is cut: on ext4, a truncation to zero
	// makes the file's close write out all its delayed allocations (the
	// "replace via truncate" safeguard), a tenth of a second per GiB.
	if st, err := f.Stat(); err != nil {
		return nil, fmt.Errorf("vhdx: create: %w", err)
	} else if st.Size() != 0 {
		if err := f.Truncate(0); err != nil {
			return nil, fmt.Errorf("vhdx: create: %w", err)
		}
	}
	if p.fixed {
		w.allocateAll()
	}
	return w, nil
}

func roundMiB(n int64) int64 { return (n + mib - 1) &^ (mib - 1) }

func (w *wrImage) chunkRatio() int64 { return (int64(1) << 23) * logicalSector / w.blockSize }

func (w *wrImage) dataBlocks(size int64) int64 { return (size + w.blockSize - 1) / w.blockSize }

// batEntries counts payload and sector bitmap entries ([MS-VHDX] 2.5).
func (w *wrImage) batEntries(size int64) int64 {
	n := w.dataBlocks(size)
	if n == 0 {
		return 0
	}
	return n + (n-1)/w.chunkRatio()
}

// checkBAT refuses a size whose BAT would exceed the table limit: the
// writer holds it in memory, and readers (ours included) refuse it.
func (w *wrImage) checkBAT(size int64) error {
	if err := (disk.Limits{}).CheckTable("the VHDX BAT", uint64(w.batEntries(size)), 8); err != nil {
		return fmt.Errorf("vhdx: %w (with %s blocks; choose a larger block_size)", err, sizeName(w.blockSize))
	}
	return nil
}

func sizeName(n int64) string { return size.Format(n) }

// allocateAll gives every block its place, in order (subformat=fixed).
func (w *wrImage) allocateAll() {
	for i := range w.blocks {
		if w.blocks[i] == 0 {
			w.blocks[i] = w.end
			w.end += w.blockSize
		}
	}
}

func (w *wrImage) usable() error {
	if w.closed {
		return fmt.Errorf("vhdx: writer: %w", os.ErrClosed)
	}
	return w.err
}

func (w *wrImage) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return err
}

// WriteAt writes virtual-disk bytes. A block is allocated at the end of
// the file on its first write of data; zeros written where nothing is
// allocated are skipped, as they read as zeros already.
func (w *wrImage) WriteAt(p []byte, off int64) (int, error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	if off < 0 || off > w.size || int64(len(p)) > w.size-off {
		return 0, fmt.Errorf("vhdx: write of %d bytes at %d lies outside the virtual disk of %d bytes", len(p), off, w.size)
	}
	// The content part of the GUIDs: where data went and a checksum of it.
	defer w.content.Add(p, off)()
	// Contiguous blocks are written with one pwrite.
	run := blockio.RunWriter{W: w.f}
	for pos := 0; pos < len(p); {
		voff := off + int64(pos)
		block, within := voff/w.blockSize, voff%w.blockSize
		k := int(min(int64(len(p)-pos), w.blockSize-within))
		piece := p[pos : pos+k]
		host := w.blocks[block]
		if host == 0 {
			if blockio.IsZero(piece) {
				pos += k // not written: the next piece starts a run of its own
				continue
			}
			host = w.end
			w.blocks[block] = host
			w.end += w.blockSize
		}
		if err := run.Queue(host+within, piece); err != nil {
			return pos, w.fail(fmt.Errorf("vhdx: %w", err))
		}
		pos += k
	}
	if err := run.Flush(); err != nil {
		return 0, w.fail(fmt.Errorf("vhdx: %w", err))
	}
	return len(p), nil
}

// Resize changes the virtual size. Blocks beyond a smaller size are
// dropped and the kept part of the last one past the new end is zeroed,
// so that growing again shows zeros there.
func (w *wrImage) Resize(newSize int64, allowShrink bool) error {
	if err := w.usable(); err != nil {
		return err
	}
	if newSize < 0 || newSize > disk.DefaultMaxVirtualSize {
		return fmt.Errorf("vhdx: %w: virtual size %d out of range 0..%d (64 TiB)", disk.ErrUnsupported, newSize, disk.DefaultMaxVirtualSize)
	}
	newSize = (newSize + logicalSector - 1) &^ (logicalSector - 1)
	if newSize < w.size && !allowShrink {
		return fmt.Errorf("vhdx: %w: from %d to %d bytes", disk.ErrShrink, w.size, newSize)
	}
	if err := w.checkBAT(newSize); err != nil {
		return err
	}
	n := w.dataBlocks(newSize)
	if newSize < w.size {
		if within := newSize % w.blockSize; within != 0 && w.blocks[n-1] != 0 {
			if err := w.zeroHost(w.blocks[n-1]+within, w.blockSize-within); err != nil {
				return err
			}
		}
		w.blocks = w.blocks[:n]
		// Blocks are allocated in increasing order; those dropped at the
		// end of the file give their space back.
		w.end = w.dataStart
		for _, h := range w.blocks {
			if h != 0 {
				w.end = max(w.end, h+w.blockSize)
			}
		}
	} else {
		w.blocks = append(w.blocks, make([]int64, n-int64(len(w.blocks)))...)
	}
	w.size = newSize
	if w.p.fixed {
		w.allocateAll()
	}
	return nil
}

// zeroHost writes zeros over a host range.
func (w *wrImage) zeroHost(off, n int64) error {
	zero := make([]byte, min(n, mib))
	for n > 0 {
		k := min(n, int64(len(zero)))
		if _, err := w.f.WriteAt(zero[:k], off); err != nil {
			return w.fail(fmt.Errorf("vhdx: zeroing at %#x: %w", off, err))
		}
		off, n = off+k, n-k
	}
	return nil
}

// Close writes the metadata, the BAT, the region tables and the headers,
// and sets the file's length.
func (w *wrImage) Close() error {
	if w.closed {
		return nil
	}
	defer func() { w.closed = true }()
	if w.err != nil {
		return w.err
	}
	batOff, batLen := w.batOff, w.batLen
	if need := roundMiB(w.batEntries(w.size) * 8); need > batLen {
		// Grown by Resize past the reserved space: the BAT goes at the end.
		batOff, batLen = w.end, need
		w.end += batLen
	}
	ids := w.guids()
	steps := []func() error{
		func() error { return w.writeBAT(batOff) },
		func() error { return w.writeAt(w.metadata(ids[2]), w.metaOff) },
		func() error {
			rt := w.regionTable(batOff, batLen)
			if err := w.writeAt(rt, regionTable1); err != nil {
				return err
			}
			return w.writeAt(rt, regionTable2)
		},
		func() error { return w.writeAt(fileIdentifier(), 0) },
		func() error { return w.writeAt(w.header(1, ids[0], ids[1]), header1) },
		func() error { return w.writeAt(w.header(2, ids[0], ids[1]), header2) },
		func() error {
			end := max(w.end, batOff+batLen)
			if err := w.f.Truncate(end); err != nil {
				return fmt.Errorf("vhdx: %w", err)
			}
			return nil
		},
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return w.fail(err)
		}
	}
	return nil
}

func (w *wrImage) writeAt(b []byte, off int64) error {
	if _, err := w.f.WriteAt(b, off); err != nil {
		return fmt.Errorf("vhdx: writing at %#x: %w", off, err)
	}
	return nil
}

// writeBAT writes the BAT at off in pieces: payload entries fully present
// or not present, sector bitmap entries not present (no parent).
func (w *wrImage) writeBAT(off int64) error {
	total := w.batEntries(w.size)
	ratio := w.chunkRatio()
	buf := make([]byte, 0, min(total*8, mib))
	block := 0
	for i := range total {
		var e uint64
		if i%(ratio+1) != ratio {
			if h := w.blocks[block]; h != 0 {
				e = uint64(h) | stateFullyPresent
			}
			block++
		}
		buf = binary.LittleEndian.AppendUint64(buf, e)
		if len(buf) == cap(buf) || i == total-1 {
			if err := w.writeAt(buf, off); err != nil {
				return err
			}
			off += int64(len(buf))
			buf = buf[:0]
		}
	}
	return nil
}

// guids derives the file write, data write and page 83 GUIDs from the
// options, the size and what was written: the same image gets the same
// GUIDs, and different images different ones.
func (w *wrImage) guids() [3][16]byte {
	var spec [33]byte
	binary.LittleEndian.PutUint64(spec[:], uint64(w.size))
	binary.LittleEndian.PutUint64(spec[8:], uint64(w.blockSize))
	binary.LittleEndian.PutUint64(spec[16:], uint64(w.p.logSize))
	if w.p.fixed {
		spec[32] = 1
	}
	digest := w.content.Sum(nil)
	var out [3][16]byte
	for i, purpose := range []string{"file write", "data write", "page 83"} {
		h := sha256.New()
		h.Write([]byte("gen-vm-image vhdx " + purpose + "\x00"))
		h.Write(spec[:])
		h.Write(digest)
		copy(out[i][:], h.Sum(nil))
		// An RFC 4122 name-based GUID (version 5, variant 10), stored as
		// [MS-VHDX] stores GUIDs: the first three fields little-endian.
		out[i][7] = out[i][7]&0x0f | 0x50
		out[i][8] = out[i][8]&0x3f | 0x80
	}
	return out
}

// fileIdentifier is the first 64 KiB's content ([MS-VHDX] 2.2.1).
func fileIdentifier() []byte {
	b := make([]byte, 8+512)
	copy(b, "vhdxfile")
	for i, u := range utf16.Encode([]rune(creator)) {
		binary.LittleEndian.PutUint16(b[8+2*i:], u)
	}
	return b
}

// header is one of the two headers ([MS-VHDX] 2.2.2), with no log GUID:
// the log is empty.
func (w *wrImage) header(seq uint64, fileWrite, dataWrite [16]byte) []byte {
	le := binary.LittleEndian
	h := make([]byte, headerSize)
	copy(h, "head")
	le.PutUint64(h[8:], seq)
	copy(h[16:], fileWrite[:])
	copy(h[32:], dataWrite[:])
	le.PutUint16(h[64:], 0) // log version
	le.PutUint16(h[66:], 1) // version
	le.PutUint32(h[68:], uint32(w.p.logSize))
	le.PutUint64(h[72:], mib)
	le.PutUint32(h[4:], crc32.Checksum(h, castagnoli))
	return h
}

// regionTable lists the BAT and the metadata region ([MS-VHDX] 2.2.3).
func (w *wrImage) regionTable(batOff, batLen int64) []byte {
	le := binary.LittleEndian
	t := make([]byte, regionTableSize)
	copy(t, "regi")
	le.PutUint32(t[8:], 2)
	for i, r := range []struct {
		id       [16]byte
		off, len int64
	}{{regionBAT, batOff, batLen}, {regionMetadata, w.metaOff, metaRegionSize}} {
		e := t[16+32*i:]
		copy(e, r.id[:])
		le.PutUint64(e[16:], uint64(r.off))
		le.PutUint32(e[24:], uint32(r.len))
		le.PutUint32(e[28:], 1) // required
	}
	le.PutUint32(t[4:], crc32.Checksum(t, castagnoli))
	return t
}

// metadata is the metadata region's table and items ([MS-VHDX] 2.6), laid
// out as qemu-img lays them out.
func (w *wrImage) metadata(page83 [16]byte) []byte {
	le := binary.LittleEndian
	const (
		isVirtualDisk = 2
		isRequired    = 4
	)
	var params [8]byte
	le.PutUint32(params[:], uint32(w.blockSize))
	if w.p.fixed {
		le.PutUint32(params[4:], 1) // LeaveBlocksAllocated
	}
	var vsize [8]byte
	le.PutUint64(vsize[:], uint64(w.size))
	var lss, pss [4]byte
	le.PutUint32(lss[:], logicalSector)
	le.PutUint32(pss[:], physicalSector)
	items := []struct {
		id    [16]byte
		flags uint32
		data  []byte
	}{
		{itemFileParameters, isRequired, params[:]},
		{itemVirtualSize, isVirtualDisk | isRequired, vsize[:]},
		{itemPage83, isVirtualDisk | isRequired, page83[:]},
		{itemLogicalSector, isVirtualDisk | isRequired, lss[:]},
		{itemPhysicalSector, isVirtualDisk | isRequired, pss[:]},
	}
	m := make([]byte, metaItemsOffset+64)
	copy(m, "metadata")
	le.PutUint16(m[10:], uint16(len(items)))
	at := metaItemsOffset
	for i, it := range items {
		e := m[32+32*i:]
		copy(e, it.id[:])
		le.PutUint32(e[16:], uint32(at))
		le.PutUint32(e[20:], uint32(len(it.data)))
		le.PutUint32(e[24:], it.flags)
		copy(m[at:], it.data)
		at += len(it.data)
	}
	return m
}
