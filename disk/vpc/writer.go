package vpc

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// CreateOptions are the -o options Create takes, as qemu-img spells them.
var CreateOptions = []disk.Option{
	{Name: "subformat", Help: "dynamic (sparse, grows as data is written) or fixed (the whole disk, then a footer)",
		Values: []string{"dynamic", "fixed"}, Default: "dynamic"},
	{Name: "force_size", Help: "on: keep the size asked for instead of rounding it up to a CHS geometry (Hyper-V and Azure read the exact size); a fixed disk is then made a whole number of MiB, as Azure requires",
		Values: []string{"on", "off"}, Default: "off"},
}

// The layout of the images Create makes, as qemu-img create lays them out:
//
//	fixed:   the disk's bytes (sparse where nothing was written), then the footer
//	dynamic: footer copy at 0, dynamic header at 512, BAT at 1536 (padded to
//	         a sector), then blocks (a 512-byte sector bitmap, all ones, and 2
//	         MiB of data) appended in the order writes need them, then the
//	         footer
//
// The footer's timestamp is SOURCE_DATE_EPOCH when it is set, else 0
// (2000-01-01T00:00:00Z); its UUID is derived from the footer's other
// fields, the block table and the first sector of every 2 MiB of the disk:
// two runs that write the same disk write the same bytes.
const tableOffset = footerSize + dynHeaderSize

// settings are the options Create takes, decoded.
type settings struct {
	fixed     bool
	forceSize bool
}

func decodeOptions(opt disk.CreateOptions) settings {
	return settings{fixed: opt.Options["subformat"] == "fixed", forceSize: opt.Options["force_size"] == "on"}
}

// Size is the virtual size a disk asked to hold size bytes gets, and why
// when it is not size rounded up to a sector: qemu-img rounds up to a CHS
// geometry unless force_size is on; a fixed disk with force_size is
// rounded up to a whole MiB, as Azure requires.
func Size(size int64, opt disk.CreateOptions) (int64, string, error) {
	if size < 0 {
		return 0, "", fmt.Errorf("vpc: negative size %d", size)
	}
	s := decodeOptions(opt)
	sectors := (size + 511) &^ 511
	if s.fixed && size == 0 {
		// Its footer would be its first sector, where readers look for a
		// dynamic disk's copy (qemu-img cannot open one).
		return 0, "", fmt.Errorf("vpc: %w: a fixed VHD of 0 bytes would be only a footer, which readers take for a broken dynamic disk; ask for at least 1 byte, or a dynamic disk", disk.ErrUnsupported)
	}
	if s.fixed && s.forceSize {
		mib := (size + 1<<20 - 1) &^ (1<<20 - 1)
		if mib > MaxVirtualSize {
			return 0, "", fmt.Errorf("vpc: %w: %d bytes: a VHD holds at most 2040 GiB (%d bytes)", disk.ErrUnsupported, mib, MaxVirtualSize)
		}
		why := ""
		if mib != sectors {
			why = "Azure accepts fixed VHDs of a whole number of MiB only, so subformat=fixed,force_size=on rounds up to one"
		}
		return mib, why, nil
	}
	_, vsize := sizedGeometry(sectors, s.forceSize)
	if vsize > MaxVirtualSize {
		return 0, "", fmt.Errorf("vpc: %w: %d bytes: a VHD holds at most 2040 GiB (%d bytes)", disk.ErrUnsupported, vsize, MaxVirtualSize)
	}
	why := ""
	if vsize != sectors {
		why = "a VHD's size is that of its CHS geometry (cylinders x heads x sectors), rounded up as qemu-img does; -o force_size=on keeps the size asked for"
	}
	return vsize, why, nil
}

// BlockSize is the allocation unit of the images Create makes: a 2 MiB
// block for dynamic disks, a file system block for fixed ones.
func BlockSize(opt disk.CreateOptions) int64 {
	if decodeOptions(opt).fixed {
		return 4 << 10
	}
	return DefaultBlockSize
}

// writer is the VHD disk.Writer.
type writer struct {
	f        *os.File
	s        settings
	size     int64 // virtual size, a multiple of 512
	geometry geometry

	// Dynamic disks.
	table    []uint32 // BAT: sector offsets of blocks, or unallocated
	tableCap int64    // entries the space between the header and the first block holds
	end      int64    // first byte after the last block

	// samples[i] is a digest of the first sector of the i-th 2 MiB of the
	// disk, for the UUID.
	samples []uint64

	timestamp uint32
	err       error // first I/O error; the writer is unusable after it
	closed    bool
}

// Create starts a new VHD of (about) size bytes in f, which it empties
// first: size is rounded as Size says, so that a size Size returned is
// kept. The image is valid only after Close.
func Create(f *os.File, size int64, opt disk.CreateOptions) (disk.Writer, error) {
	s := decodeOptions(opt)
	if size < 0 {
		return nil, fmt.Errorf("vpc: negative size %d", size)
	}
	g, size := sizedGeometry((size+511)&^511, s.forceSize)
	if size > MaxVirtualSize {
		return nil, fmt.Errorf("vpc: %w: %d bytes: a VHD holds at most 2040 GiB (%d bytes)", disk.ErrUnsupported, size, MaxVirtualSize)
	}
	ts, err := timestamp()
	if err != nil {
		return nil, err
	}
	// Empty the file only when it is not empty already: on ext4 a
	// truncation to zero makes closing the file flush all its data
	// (auto_da_alloc).
	if st, err := f.Stat(); err != nil {
		return nil, fmt.Errorf("vpc: create: %w", err)
	} else if st.Size() != 0 {
		if err := f.Truncate(0); err != nil {
			return nil, fmt.Errorf("vpc: create: %w", err)
		}
	}
	w := &writer{f: f, s: s, size: size, geometry: g, timestamp: ts}
	w.samples = make([]uint64, blocks(size, DefaultBlockSize))
	if !s.fixed {
		w.table = make([]uint32, blocks(size, DefaultBlockSize))
		for i := range w.table {
			w.table[i] = unallocated
		}
		w.tableCap = ((int64(len(w.table))*4 + 511) &^ 511) / 4
		w.end = tableOffset + w.tableCap*4
	}
	return w, nil
}

// timestamp is the footer's: SOURCE_DATE_EPOCH (reproducible-builds.org)
// in seconds since 2000, else 0.
func timestamp() (uint32, error) {
	v, ok := os.LookupEnv("SOURCE_DATE_EPOCH")
	if !ok || v == "" {
		return 0, nil
	}
	t, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("vpc: %w: SOURCE_DATE_EPOCH=%q is not a number of seconds", disk.ErrOption, v)
	}
	return uint32(min(max(t-timestampBase, 0), 1<<32-1)), nil
}

func blocks(size, blockSize int64) int64 { return (size + blockSize - 1) / blockSize }

func (w *writer) usable() error {
	if w.closed {
		return fmt.Errorf("vpc: writer: %w", os.ErrClosed)
	}
	return w.err
}

func (w *writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return err
}

// WriteAt writes virtual-disk bytes. In a dynamic disk a block is
// allocated, at the end of the file, the first time data that is not all
// zeros is written into it.
func (w *writer) WriteAt(p []byte, off int64) (int, error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	if off < 0 || off > w.size || int64(len(p)) > w.size-off {
		return 0, fmt.Errorf("vpc: write of %d bytes at %d lies outside the virtual disk of %d bytes", len(p), off, w.size)
	}
	w.sample(p, off)
	if w.s.fixed {
		if _, err := w.f.WriteAt(p, off); err != nil {
			return 0, w.fail(fmt.Errorf("vpc: %w", err))
		}
		return len(p), nil
	}
	const bs = DefaultBlockSize
	for pos := 0; pos < len(p); {
		voff := off + int64(pos)
		n := int(min(bs-voff%bs, int64(len(p)-pos)))
		seg := p[pos : pos+n]
		i := voff / bs
		if w.table[i] == unallocated {
			if blockio.IsZero(seg) {
				pos += n
				continue
			}
			if err := w.allocate(i); err != nil {
				return pos, w.fail(err)
			}
		}
		host := int64(w.table[i])*512 + bitmapSize(bs) + voff%bs
		if _, err := w.f.WriteAt(seg, host); err != nil {
			return pos, w.fail(fmt.Errorf("vpc: %w", err))
		}
		pos += n
	}
	return len(p), nil
}

// allocate appends block i: its bitmap says every sector holds data, as
// qemu's does (the block's unwritten bytes lie in a hole and read as
// zeros).
func (w *writer) allocate(i int64) error {
	if w.end/512 >= unallocated {
		return fmt.Errorf("vpc: the file has outgrown the block table's 32-bit sector offsets")
	}
	bm := bytes.Repeat([]byte{0xff}, int(bitmapSize(DefaultBlockSize)))
	if _, err := w.f.WriteAt(bm, w.end); err != nil {
		return fmt.Errorf("vpc: %w", err)
	}
	w.table[i] = uint32(w.end / 512)
	w.end += int64(len(bm)) + DefaultBlockSize
	return nil
}

// sample records a digest of the first sector of each 2 MiB of the disk
// that p starts (or the part of it p holds).
func (w *writer) sample(p []byte, off int64) {
	const stretch = DefaultBlockSize
	for at := (off + stretch - 1) / stretch * stretch; at < off+int64(len(p)); at += stretch {
		b := p[at-off:]
		b = b[:min(len(b), 512)]
		sum := sha256.Sum256(b)
		w.samples[at/stretch] = binary.BigEndian.Uint64(sum[:])
	}
}

// Resize changes the virtual size; shrinking discards the data beyond the
// new size and needs allowShrink. The size is rounded as Create rounds it.
func (w *writer) Resize(size int64, allowShrink bool) error {
	if err := w.usable(); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("vpc: negative size %d", size)
	}
	g, size := sizedGeometry((size+511)&^511, w.s.forceSize)
	if size > MaxVirtualSize {
		return fmt.Errorf("vpc: %w: %d bytes: a VHD holds at most 2040 GiB (%d bytes)", disk.ErrUnsupported, size, MaxVirtualSize)
	}
	if size < w.size && !allowShrink {
		return fmt.Errorf("vpc: %w: from %d to %d bytes", disk.ErrShrink, w.size, size)
	}
	n := blocks(size, DefaultBlockSize)
	if size < w.size {
		// The bytes past the new end of the last block must read as
		// zeros if the disk grows again.
		if err := w.zeroFrom(size); err != nil {
			return w.fail(err)
		}
		w.samples = w.samples[:n]
		if !w.s.fixed {
			w.table = w.table[:n]
		}
	}
	for int64(len(w.samples)) < n {
		w.samples = append(w.samples, 0)
		if !w.s.fixed {
			w.table = append(w.table, unallocated)
		}
	}
	w.size, w.geometry = size, g
	return nil
}

// zeroFrom zeros the disk from off to the end of its block (dynamic) or
// cuts the file there (fixed).
func (w *writer) zeroFrom(off int64) error {
	if w.s.fixed {
		if err := w.f.Truncate(off); err != nil {
			return fmt.Errorf("vpc: %w", err)
		}
		return nil
	}
	const bs = DefaultBlockSize
	i := off / bs
	if off%bs == 0 || w.table[i] == unallocated {
		return nil
	}
	host := int64(w.table[i])*512 + bitmapSize(bs) + off%bs
	if _, err := w.f.WriteAt(make([]byte, bs-off%bs), host); err != nil {
		return fmt.Errorf("vpc: %w", err)
	}
	return nil
}

// Close writes the metadata: for a dynamic disk the block table (where
// Create reserved room for it, or after the last block when the disk
// grew past that), the dynamic header and both footers; for a fixed disk
// the footer after the data.
func (w *writer) Close() error {
	if err := w.usable(); err != nil {
		return err
	}
	w.closed = true
	spec := footerSpec{diskType: diskDynamic, size: w.size, geometry: w.geometry, creatorApp: "qemu", timestamp: w.timestamp}
	if w.s.forceSize {
		spec.creatorApp = "qem2" // read by its current size (qemu fb9245c)
	}
	if w.s.fixed {
		spec.diskType = diskFixed
	}
	var table []byte
	tableAt := int64(tableOffset)
	if !w.s.fixed {
		table = make([]byte, (int64(len(w.table))*4+511)&^511)
		for i := range table {
			table[i] = 0xff
		}
		for i, e := range w.table {
			binary.BigEndian.PutUint32(table[4*i:], e)
		}
		if int64(len(w.table)) > w.tableCap {
			tableAt = w.end
			w.end += int64(len(table))
		}
	}
	spec.uuid = w.uuid(spec, table)
	footer := spec.encode()
	if w.s.fixed {
		if err := w.f.Truncate(w.size); err != nil {
			return w.fail(fmt.Errorf("vpc: %w", err))
		}
		if _, err := w.f.WriteAt(footer, w.size); err != nil {
			return w.fail(fmt.Errorf("vpc: %w", err))
		}
		return nil
	}
	header := encodeDynHeader(tableAt, uint32(len(w.table)), DefaultBlockSize)
	head := append(bytes.Clone(footer), header...)
	if tableAt == tableOffset {
		// Reserved room not used by a shrunk table stays all ones.
		for len(table) < int(w.tableCap*4) {
			table = append(table, 0xff)
		}
		head = append(head, table...)
	} else if _, err := w.f.WriteAt(table, tableAt); err != nil {
		return w.fail(fmt.Errorf("vpc: %w", err))
	}
	if _, err := w.f.WriteAt(head, 0); err != nil {
		return w.fail(fmt.Errorf("vpc: %w", err))
	}
	if _, err := w.f.WriteAt(footer, w.end); err != nil {
		return w.fail(fmt.Errorf("vpc: %w", err))
	}
	// A file that once was longer (it is emptied first) ends here.
	if err := w.f.Truncate(w.end + footerSize); err != nil {
		return w.fail(fmt.Errorf("vpc: %w", err))
	}
	return nil
}

// uuid derives the footer's UUID from what the disk is: its footer
// fields, its block table and the samples of its content (an RFC 9562
// version 8 UUID).
func (w *writer) uuid(spec footerSpec, table []byte) [16]byte {
	h := sha256.New()
	h.Write([]byte("gen-vm-image vpc\x00"))
	h.Write(spec.encode())
	h.Write(table)
	var b [8]byte
	for _, s := range w.samples {
		binary.BigEndian.PutUint64(b[:], s)
		h.Write(b[:])
	}
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x80
	u[8] = u[8]&0x3f | 0x80
	return u
}
