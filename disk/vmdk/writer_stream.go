package vmdk

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sync"

	"github.com/klauspost/compress/zlib"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// streamWriter writes a streamOptimized extent: every grain compressed,
// stored once, in increasing order. It is a disk.Compressor: the converter
// compresses grains on every core (Compress) and hands them back in order
// (WriteStored); WriteAt compresses in the caller's goroutine.
type streamWriter struct {
	*wrImage
	// pending is the grain WriteAt is filling (pendingIdx, or -1).
	pending    []byte
	pendingIdx int64
	gt         []uint32 // the grain table of curGT
	zw         sync.Pool
}

var _ disk.Compressor = (*streamWriter)(nil)

// CompressUnit is the grain.
func (w *streamWriter) CompressUnit() int64 { return wrGrainBytes }

// Compress returns what the file stores for the grain at off: a grain
// marker (the grain's first sector and the stream's length) and a zlib
// stream of the grain, padded to a sector. A short last grain is padded
// with zeros to a whole grain, which every reader expects. It is safe for
// concurrent use, and deterministic.
func (w *streamWriter) Compress(off int64, unit []byte) ([]byte, error) {
	if off%wrGrainBytes != 0 || len(unit) > wrGrainBytes {
		return nil, fmt.Errorf("vmdk: compress: %d bytes at %d are not one grain", len(unit), off)
	}
	if len(unit) < wrGrainBytes {
		full := make([]byte, wrGrainBytes)
		copy(full, unit)
		unit = full
	}
	out := make([]byte, grainMarkerSize, grainMarkerSize+len(unit)/2)
	binary.LittleEndian.PutUint64(out, uint64(off/sectorSize))
	buf := sliceWriter{out}
	zw, _ := w.zw.Get().(*zlib.Writer)
	if zw == nil {
		zw, _ = zlib.NewWriterLevel(&buf, zlib.DefaultCompression)
	} else {
		zw.Reset(&buf)
	}
	defer w.zw.Put(zw)
	if _, err := zw.Write(unit); err != nil {
		return nil, fmt.Errorf("vmdk: compress: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("vmdk: compress: %w", err)
	}
	out = buf.b
	binary.LittleEndian.PutUint32(out[8:], uint32(len(out)-grainMarkerSize))
	if pad := len(out) % sectorSize; pad != 0 {
		out = append(out, make([]byte, sectorSize-pad)...)
	}
	return out, nil
}

type sliceWriter struct{ b []byte }

func (s *sliceWriter) Write(p []byte) (int, error) { s.b = append(s.b, p...); return len(p), nil }

// WriteStored appends what Compress made for the grain at off, after the
// grain table of the previous grains when off starts another table.
func (w *streamWriter) WriteStored(off int64, stored []byte) error {
	if err := w.usable(); err != nil {
		return err
	}
	g := off / wrGrainBytes
	if off%wrGrainBytes != 0 || off < 0 || off >= w.size {
		return fmt.Errorf("vmdk: grain at %d: not a grain of the disk", off)
	}
	if err := w.flushPending(); err != nil {
		return err
	}
	if g <= w.lastGrain {
		return w.fail(fmt.Errorf("vmdk: grain at %d: %w", off, errOutOfOrder))
	}
	return w.store(g, stored)
}

func (w *streamWriter) store(g int64, stored []byte) error {
	if t := g / wrGTEntries; t != w.curGT {
		if err := w.endGT(); err != nil {
			return w.fail(err)
		}
		w.curGT = t
	}
	if w.gt == nil {
		w.gt = make([]uint32, wrGTEntries)
	}
	w.gt[g%wrGTEntries] = uint32(w.end / sectorSize)
	if _, err := w.f.WriteAt(stored, w.end); err != nil {
		return w.fail(fmt.Errorf("vmdk: writing grain %d: %w", g, err))
	}
	w.crc = crc32.Update(w.crc, crc32.MakeTable(crc32.Castagnoli), stored)
	w.end += int64(len(stored))
	w.lastGrain = g
	return nil
}

// endGT writes the grain table being filled, behind its marker, and notes
// it in the directory.
func (w *streamWriter) endGT() error {
	if w.gt == nil {
		return nil
	}
	for int64(len(w.gd)) <= w.curGT {
		w.gd = append(w.gd, 0)
	}
	buf := marker(wrGTSectors, markerGT)
	for _, e := range w.gt {
		buf = binary.LittleEndian.AppendUint32(buf, e)
	}
	if _, err := w.f.WriteAt(buf, w.end); err != nil {
		return fmt.Errorf("vmdk: writing grain table %d: %w", w.curGT, err)
	}
	w.gd[w.curGT] = uint32(w.end/sectorSize) + 1
	w.end += int64(len(buf))
	w.gt = nil
	return nil
}

// WriteAt gathers a grain and stores it compressed once the writes move
// past it. Writes must come in increasing order (the converter's); a
// grain of zeros is not stored.
func (w *streamWriter) WriteAt(p []byte, off int64) (int, error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	if off < 0 || off > w.size || int64(len(p)) > w.size-off {
		return 0, fmt.Errorf("vmdk: write of %d bytes at %d beyond the virtual size %d", len(p), off, w.size)
	}
	for done := 0; done < len(p); {
		pos := off + int64(done)
		g := pos / wrGrainBytes
		in := pos % wrGrainBytes
		n := int(min(int64(len(p)-done), wrGrainBytes-in))
		seg := p[done : done+n]
		done += n
		if g != w.pendingIdx {
			if err := w.flushPending(); err != nil {
				return done - n, err
			}
			if blockio.IsZero(seg) {
				continue
			}
			if g <= w.lastGrain {
				return done - n, w.fail(fmt.Errorf("vmdk: write at %d: %w", pos, errOutOfOrder))
			}
			if w.pending == nil {
				w.pending = make([]byte, wrGrainBytes)
			}
			clear(w.pending)
			w.pendingIdx = g
		}
		copy(w.pending[in:], seg)
	}
	return len(p), nil
}

// flushPending compresses and stores the grain WriteAt gathered.
func (w *streamWriter) flushPending() error {
	if w.pendingIdx < 0 || w.pending == nil {
		w.pendingIdx = -1
		return nil
	}
	g := w.pendingIdx
	w.pendingIdx = -1
	if blockio.IsZero(w.pending) {
		return nil
	}
	unit := w.pending[:min(wrGrainBytes, w.size-g*wrGrainBytes)]
	stored, err := w.Compress(g*wrGrainBytes, unit)
	if err != nil {
		return w.fail(err)
	}
	return w.store(g, stored)
}

// Resize changes the virtual size. A stream keeps what it stored, so it
// shrinks only above the grains stored already.
func (w *streamWriter) Resize(size int64, allowShrink bool) error {
	if err := w.usable(); err != nil {
		return err
	}
	size = (size + sectorSize - 1) / sectorSize * sectorSize
	if err := (disk.Limits{}).CheckVirtualSize("the VMDK", uint64(max(size, 0))); err != nil || size < 0 {
		return fmt.Errorf("vmdk: resize to %d bytes: %w", size, err)
	}
	if size < w.size {
		if !allowShrink {
			return fmt.Errorf("vmdk: resize from %d to %d bytes: %w", w.size, size, disk.ErrShrink)
		}
		if err := w.flushPending(); err != nil {
			return err
		}
		if w.lastGrain >= 0 && (w.lastGrain+1)*wrGrainBytes > size {
			return fmt.Errorf("vmdk: resize from %d to %d bytes: data is stored up to %d and %w", w.size, size, (w.lastGrain+1)*wrGrainBytes, errOutOfOrder)
		}
	}
	w.size = size
	return nil
}

// Close stores the last grain and writes the last grain table, the grain
// directory, the footer, the end-of-stream marker, and then the header and
// the descriptor at the start.
func (w *streamWriter) Close() error {
	if err := w.usable(); err != nil {
		return err
	}
	w.closed = true
	if err := w.finishStream(); err != nil {
		w.err = err
		return err
	}
	return nil
}

func (w *streamWriter) finishStream() error {
	if err := w.flushPending(); err != nil {
		return err
	}
	if err := w.endGT(); err != nil {
		return err
	}
	gtCount := gtCountFor(w.size)
	for int64(len(w.gd)) < gtCount {
		w.gd = append(w.gd, 0)
	}
	gdSectors := (gtCount*4 + sectorSize - 1) / sectorSize
	buf := marker(uint64(gdSectors), markerGD)
	gdSector := w.end/sectorSize + 1
	gd := make([]byte, gdSectors*sectorSize)
	for i := range gtCount {
		binary.LittleEndian.PutUint32(gd[i*4:], w.gd[i])
	}
	buf = append(buf, gd...)
	h := header{
		version: 3, flags: flagNLTest | flagCompressed | flagMarkers, capacity: uint64(w.size / sectorSize), grainSize: wrGrainSectors,
		descriptorOffset: wrDescOffset, descriptorSize: wrDescSectors, numGTEsPerGT: wrGTEntries,
		gdOffset: uint64(gdSector), compressAlgo: compressDeflate,
	}
	buf = append(buf, marker(1, markerFooter)...)
	buf = append(buf, h.marshal(wrStreamOverHd)...)
	buf = append(buf, make([]byte, sectorSize)...) // end of stream
	if _, err := w.f.WriteAt(buf, w.end); err != nil {
		return fmt.Errorf("vmdk: writing the grain directory and the footer: %w", err)
	}
	w.end += int64(len(buf))
	if err := w.extend(); err != nil {
		return err
	}
	h.gdOffset = gdAtEnd
	return w.writeHead(h, wrStreamOverHd, subStreamOptimized)
}
