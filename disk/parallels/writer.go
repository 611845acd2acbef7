package parallels

import (
	"encoding/binary"
	"fmt"
	"os"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// The writer lays an image out as qemu-img does: the header and the BAT,
// padded to a whole cluster (data_off), then the data clusters, appended
// when a write first touches them; what is not written of a cluster lies in
// a hole and reads as zeros. BAT entries count clusters ("WithouFreSpacExt").
// The BAT stays in memory until Close; nothing in the image depends on the
// clock or on chance, so the same writes give the same bytes.

var errWriterClosed = fmt.Errorf("parallels: writer: %w", os.ErrClosed)

type writer struct {
	f         *os.File
	cs        int64 // cluster size
	size      int64 // virtual size, a multiple of 512
	bat       []uint32
	dataOff   int64 // first data byte, a multiple of cs
	allocated int64 // data clusters, from dataOff on
	stored    bool  // some data was written
	err       error
	closed    bool
}

// Create starts a Parallels image of size bytes (rounded up to a sector) in
// f, which it empties, with the cluster size of opt's cluster_size (1 MiB
// by default). Until Close the header says the image is in use, as qemu
// marks an image it has open for writing. Close neither syncs nor closes f.
func Create(f *os.File, size int64, opt disk.CreateOptions) (disk.Writer, error) {
	cs, err := clusterSizeOf(opt)
	if err != nil {
		return nil, err
	}
	w := &writer{f: f, cs: cs}
	if size, err = w.checkSize(size); err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("parallels: create: %w", err)
	}
	if st.Size() != 0 {
		if err := f.Truncate(0); err != nil {
			return nil, fmt.Errorf("parallels: create: %w", err)
		}
	}
	w.size = size
	w.bat = make([]uint32, w.entriesFor(size))
	w.dataOff = w.dataOffFor(len(w.bat))
	if _, err := f.WriteAt(w.header(true), 0); err != nil {
		return nil, fmt.Errorf("parallels: create: %w", err)
	}
	return w, nil
}

// checkSize rounds a size up to a sector and refuses one whose BAT our
// reader would refuse.
func (w *writer) checkSize(size int64) (int64, error) {
	if size < 0 || size > disk.DefaultMaxVirtualSize {
		return 0, fmt.Errorf("parallels: %w: virtual size %d out of range 0..%d", disk.ErrUnsupported, size, disk.DefaultMaxVirtualSize)
	}
	size = (size + sectorSize - 1) &^ (sectorSize - 1)
	if w.entriesFor(size)*4 > disk.DefaultMaxTableBytes {
		return 0, fmt.Errorf("parallels: %w: virtual size %d needs a catalog larger than %d bytes with %d-byte clusters (use a larger cluster_size)",
			disk.ErrUnsupported, size, disk.DefaultMaxTableBytes, w.cs)
	}
	return size, nil
}

func (w *writer) entriesFor(size int64) int64 { return (size + w.cs - 1) / w.cs }

// dataOffFor is where the data starts after a BAT of n entries.
func (w *writer) dataOffFor(n int) int64 {
	return (headerSize + int64(n)*4 + w.cs - 1) / w.cs * w.cs
}

func (w *writer) header(inUse bool) []byte {
	le := binary.LittleEndian
	h := make([]byte, headerSize)
	copy(h, magicV2)
	le.PutUint32(h[16:], version)
	le.PutUint32(h[20:], heads)
	le.PutUint32(h[24:], uint32(w.size/sectorSize/heads/sectorsPerCyl))
	le.PutUint32(h[28:], uint32(w.cs/sectorSize))
	le.PutUint32(h[32:], uint32(len(w.bat)))
	le.PutUint64(h[36:], uint64(w.size/sectorSize))
	if inUse {
		le.PutUint32(h[44:], inUseMagic)
	}
	le.PutUint32(h[48:], uint32(w.dataOff/sectorSize))
	return h
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

// WriteAt writes virtual-disk bytes. Zeros written where no cluster is
// stored are skipped; a new cluster is appended after the last.
func (w *writer) WriteAt(p []byte, off int64) (int, error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	if off < 0 || off > w.size || int64(len(p)) > w.size-off {
		return 0, fmt.Errorf("parallels: write of %d bytes at %d lies outside the virtual disk of %d bytes", len(p), off, w.size)
	}
	// Pieces whose clusters follow each other in the file go out in one write.
	run := blockio.RunWriter{W: w.f}
	for pos := 0; pos < len(p); {
		voff := off + int64(pos)
		c := voff / w.cs
		within := voff % w.cs
		k := int(min(int64(len(p)-pos), w.cs-within))
		if w.bat[c] == 0 {
			if blockio.IsZero(p[pos : pos+k]) {
				pos += k // not written: the next piece starts a run of its own
				continue
			}
			w.bat[c] = uint32((w.dataOff + w.allocated*w.cs) / w.cs)
			w.allocated++
		}
		host := int64(w.bat[c])*w.cs + within
		w.stored = true
		if err := run.Queue(host, p[pos:pos+k]); err != nil {
			return pos, w.fail(fmt.Errorf("parallels: %w", err))
		}
		pos += k
	}
	if err := run.Flush(); err != nil {
		return 0, w.fail(fmt.Errorf("parallels: %w", err))
	}
	return len(p), nil
}

// Resize changes the virtual size. When a larger BAT no longer fits before
// the data, the clusters in its way move to the end of the file. Shrinking
// drops the clusters beyond the new end and moves the last ones into their
// places, so that the file has no unused cluster.
func (w *writer) Resize(size int64, allowShrink bool) error {
	if err := w.usable(); err != nil {
		return err
	}
	size, err := w.checkSize(size)
	if err != nil {
		return err
	}
	if size < w.size && !allowShrink {
		return fmt.Errorf("parallels: %w: from %d to %d bytes", disk.ErrShrink, w.size, size)
	}
	old, entries := int64(len(w.bat)), w.entriesFor(size)
	switch {
	case entries > old:
		w.bat = append(w.bat, make([]uint32, entries-old)...)
		if need := w.dataOffFor(len(w.bat)); need > w.dataOff {
			if err := w.moveData(need); err != nil {
				return err
			}
		}
	case entries < old:
		if err := w.shrinkBAT(entries); err != nil {
			return err
		}
	}
	if tail := size % w.cs; size < w.size && tail != 0 {
		if e := w.bat[size/w.cs]; e != 0 {
			if err := w.zeroHost(int64(e)*w.cs+tail, w.cs-tail); err != nil {
				return err
			}
		}
	}
	w.size = size
	return nil
}

// moveData makes the data start at newOff: the clusters below it move to
// the end, and what they leave is zeroed (it becomes BAT and padding).
func (w *writer) moveData(newOff int64) error {
	oldOff, oldEnd := w.dataOff, w.dataOff+w.allocated*w.cs
	end := max(oldEnd, newOff)
	buf := make([]byte, w.cs)
	for c, e := range w.bat {
		if e == 0 || int64(e)*w.cs >= newOff {
			continue
		}
		if err := w.copyCluster(buf, int64(e)*w.cs, end, oldEnd); err != nil {
			return err
		}
		w.bat[c] = uint32(end / w.cs)
		end += w.cs
	}
	if err := w.zeroHost(oldOff, min(newOff, oldEnd)-oldOff); err != nil {
		return err
	}
	w.dataOff = newOff
	return nil
}

// shrinkBAT drops the entries from n on and compacts the stored clusters.
func (w *writer) shrinkBAT(n int64) error {
	dropped := int64(0)
	for _, e := range w.bat[n:] {
		if e != 0 {
			dropped++
		}
	}
	w.bat = w.bat[:n]
	count := w.allocated - dropped
	first := w.dataOff / w.cs
	used := make([]bool, count)
	var movers []int
	for c, e := range w.bat {
		if e == 0 {
			continue
		}
		if slot := int64(e) - first; slot < count {
			used[slot] = true
		} else {
			movers = append(movers, c)
		}
	}
	free := int64(0)
	buf := make([]byte, w.cs)
	fileEnd := w.dataOff + w.allocated*w.cs
	for _, c := range movers {
		for used[free] {
			free++
		}
		to := w.dataOff + free*w.cs
		if err := w.copyCluster(buf, int64(w.bat[c])*w.cs, to, fileEnd); err != nil {
			return err
		}
		used[free] = true
		w.bat[c] = uint32(to / w.cs)
	}
	w.allocated = count
	if err := w.f.Truncate(w.dataOff + count*w.cs); err != nil {
		return w.fail(fmt.Errorf("parallels: shrinking the file: %w", err))
	}
	return nil
}

func (w *writer) copyCluster(buf []byte, from, to, fileEnd int64) error {
	if err := blockio.ReadPadded(w.f, fileEnd, buf, from); err != nil {
		return w.fail(fmt.Errorf("parallels: moving the cluster at %#x: %w", from, err))
	}
	if _, err := w.f.WriteAt(buf, to); err != nil {
		return w.fail(fmt.Errorf("parallels: moving the cluster at %#x: %w", from, err))
	}
	return nil
}

// zeroHost writes n zero bytes at host offset off.
func (w *writer) zeroHost(off, n int64) error {
	zero := make([]byte, min(max(n, 0), 64<<10))
	for n > 0 {
		k := min(n, int64(len(zero)))
		if _, err := w.f.WriteAt(zero[:k], off); err != nil {
			return w.fail(fmt.Errorf("parallels: zeroing at %#x: %w", off, err))
		}
		off += k
		n -= k
	}
	return nil
}

// Close writes the BAT and the header, marked closed, and sets the file's
// length to the end of the last cluster.
func (w *writer) Close() error {
	if w.closed {
		return errWriterClosed
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	// qemu-img check (7.2) takes the image to end one cluster after the
	// last stored one, or after the first cluster when none is: with no
	// data and a BAT longer than a cluster, it would count the BAT as
	// leaked. The first cluster then points at a hole after the BAT
	// instead: it reads as zeros all the same.
	if w.allocated == 0 && len(w.bat) > 0 && w.dataOff > w.cs {
		w.bat[0] = uint32(w.dataOff / w.cs)
		w.allocated = 1
	}
	le := binary.LittleEndian
	const chunk = 64 << 10 // entries per write
	buf := make([]byte, 4*min(chunk, len(w.bat)))
	for i := 0; i < len(w.bat); i += chunk {
		n := min(chunk, len(w.bat)-i)
		for j := range n {
			le.PutUint32(buf[4*j:], w.bat[i+j])
		}
		if _, err := w.f.WriteAt(buf[:4*n], headerSize+int64(i)*4); err != nil {
			return fmt.Errorf("parallels: writing the catalog: %w", err)
		}
	}
	if err := w.f.Truncate(w.dataOff + w.allocated*w.cs); err != nil {
		return fmt.Errorf("parallels: setting the file's length: %w", err)
	}
	if _, err := w.f.WriteAt(w.header(false), 0); err != nil {
		return fmt.Errorf("parallels: writing the header: %w", err)
	}
	return nil
}
