package vhdx

import (
	"bytes"
	"cmp"
	"container/heap"
	"encoding/binary"
	"hash/crc32"
	"io"
	"slices"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
	"github.com/ucphhpc/gen-vm-image-go/size"
)

// The log ([MS-VHDX] 2.3): a circular buffer of entries, each a 64-byte
// header and 32-byte descriptors in 4 KiB sectors, then one 4 KiB data
// sector per data descriptor. An image whose header names a log GUID may
// hold an active sequence of entries that were never applied to the file;
// it must be replayed before anything else is read.
//
// We never write the input: replayLog applies the active sequence to an
// overlay in memory, bounded by the log's length, and the image is read
// through it.
const (
	logSector      = 4 << 10
	logEntryHeader = 64
	logDescriptor  = 32
	logDataBytes   = 4084 // a data sector's payload; 8 leading and 4 trailing bytes are in its descriptor
	// logCRCBudget bounds the bytes the search checksums: a hostile log
	// can make every sector claim an entry as long as the log.
	logCRCBudget = 1 << 30
)

// replayLog finds the active sequence of the log the header hdr describes
// and returns src as that sequence changes it, and the number of entries
// replayed (0: the log holds no valid entry; src is returned unchanged).
// It refuses, saying so, a log it cannot replay in memory.
func replayLog(src blockio.Source, hdr []byte, limits disk.Limits) (blockio.Source, int, error) {
	le := binary.LittleEndian
	logLength, logOffset := int64(le.Uint32(hdr[68:])), int64(le.Uint64(hdr[72:]))
	if v := le.Uint16(hdr[64:]); v != 0 {
		return src, 0, refuse(disk.ErrUnsupported, "log version %d (0 exists)", v)
	}
	if logOffset < mib || logOffset%mib != 0 || logLength%mib != 0 {
		return src, 0, refuse(disk.ErrFormat, "the log at %#x (%d bytes) is not MiB-aligned", logOffset, logLength)
	}
	if limit := limits.MaxTableBytes; logLength > limit {
		return src, 0, refuse(disk.ErrLimit, "the image holds a pending log of %s, more than the %s we replay in memory (the input file is never written); replay it on a trusted host (Hyper-V, or qemu-img check -r all on a copy)",
			size.Format(logLength), size.Format(limit))
	}
	buf, err := src.Read("VHDX log", logOffset, logLength)
	if err != nil {
		return src, 0, err
	}
	lg := &logBuf{b: buf, guid: hdr[48:64], budget: logCRCBudget}
	seq, err := lg.search()
	if err != nil || len(seq) == 0 {
		return src, 0, err
	}
	// [MS-VHDX] 2.3.3: an entry whose FlushedFileOffset lies beyond the
	// end of the file says that the file was truncated.
	for _, e := range seq {
		if flushed := le.Uint64(lg.sector(e, 0)[48:]); flushed > uint64(src.Size) {
			return src, 0, refuse(disk.ErrFormat, "the log says the file was %d bytes long, but it has %d: it was truncated", flushed, src.Size)
		}
	}
	ov, err := lg.overlay(seq, src)
	if err != nil {
		return src, 0, err
	}
	return blockio.Source{R: ov, Size: ov.size}, len(seq), nil
}

// logBuf is a log read into memory, with the GUID its entries must carry.
type logBuf struct {
	b      []byte
	guid   []byte
	budget int64 // bytes left to checksum
}

// sector returns sector i of the entry at start, wrapping around the end
// of the circular buffer.
func (lg *logBuf) sector(start, i int64) []byte {
	off := (start + i*logSector) % int64(len(lg.b))
	return lg.b[off : off+logSector]
}

// entry is the header of the entry at start if it is a valid entry that
// follows prev (0: any sequence number), with its length in sectors.
func (lg *logBuf) entry(start int64, prev uint64) (seq uint64, sectors int64, ok bool, err error) {
	le := binary.LittleEndian
	h := lg.sector(start, 0)
	length := int64(le.Uint32(h[8:]))
	seq = le.Uint64(h[16:])
	descs := int64(le.Uint32(h[24:]))
	descSectors := (descs + 2 + 127) / 128
	if string(h[:4]) != "loge" || length == 0 || length%logSector != 0 || length > int64(len(lg.b)) || seq == 0 ||
		!bytes.Equal(h[32:48], lg.guid) || descSectors*logSector > length || (prev != 0 && seq != prev+1) {
		return 0, 0, false, nil
	}
	sectors = length / logSector
	if lg.budget -= length; lg.budget < 0 {
		return 0, 0, false, refuse(disk.ErrLimit, "searching the pending log for its active entries would checksum more than %s; replay it on a trusted host (Hyper-V, or qemu-img check -r all on a copy)", size.Format(logCRCBudget))
	}
	c := crc32.Update(0, castagnoli, h[:4])
	c = crc32.Update(c, castagnoli, []byte{0, 0, 0, 0})
	c = crc32.Update(c, castagnoli, h[8:])
	for i := int64(1); i < sectors; i++ {
		c = crc32.Update(c, castagnoli, lg.sector(start, i))
	}
	return seq, sectors, c == le.Uint32(h[4:]), nil
}

// search returns the start offsets of the entries of the active sequence:
// of the runs of valid entries with consecutive sequence numbers, the one
// whose first entry has the highest sequence number, as qemu chooses
// (block/vhdx-log.c vhdx_log_search).
func (lg *logBuf) search() ([]int64, error) {
	var best []int64
	var bestSeq uint64
	n := int64(len(lg.b))
	for pos := int64(0); pos < n; {
		seq, sectors, ok, err := lg.entry(pos, 0)
		if err != nil {
			return nil, err
		}
		if !ok {
			pos += logSector
			continue
		}
		run := []int64{pos}
		next, last := pos+sectors*logSector, seq
		for next-pos < n {
			s, k, ok, err := lg.entry(next%n, last)
			if err != nil {
				return nil, err
			}
			if !ok {
				break
			}
			run = append(run, next%n)
			next, last = next+k*logSector, s
		}
		if best == nil || seq > bestSeq {
			best, bestSeq = run, seq
		}
		if next >= n {
			break // the run wrapped around: every sector has been seen
		}
		pos = next
	}
	return best, nil
}

// logWrite is one descriptor of the active sequence: 4 KiB of data, or
// zeros when data is nil, at a file offset.
type logWrite struct {
	off, end int64
	data     []byte
	order    int
}

// overlay collects the writes of the entries at seq, in order, and
// resolves them into disjoint patches over src.
func (lg *logBuf) overlay(seq []int64, src blockio.Source) (*overlay, error) {
	le := binary.LittleEndian
	const maxOffset = 1 << 60 // beyond any file; keeps sums from overflowing
	var writes []logWrite
	newSize := src.Size
	for _, start := range seq {
		h := lg.sector(start, 0)
		entrySeq := le.Uint64(h[16:])
		descs := int64(le.Uint32(h[24:]))
		sectors := int64(le.Uint32(h[8:])) / logSector
		data := (descs + 2 + 127) / 128 // the first data sector
		for i := range descs {
			pos := logEntryHeader + i*logDescriptor
			d := lg.sector(start, pos/logSector)[pos%logSector:][:logDescriptor]
			fileOff := le.Uint64(d[16:])
			if le.Uint64(d[24:]) != entrySeq || fileOff%logSector != 0 || fileOff > maxOffset {
				return nil, refuse(disk.ErrFormat, "log entry %d: descriptor %d is invalid", entrySeq, i)
			}
			w := logWrite{off: int64(fileOff), order: len(writes)}
			switch string(d[:4]) {
			case "zero":
				n := le.Uint64(d[8:])
				if n%logSector != 0 || n > maxOffset {
					return nil, refuse(disk.ErrFormat, "log entry %d: zero descriptor %d has length %d", entrySeq, i, n)
				}
				w.end = w.off + int64(n)
			case "desc":
				if data >= sectors {
					return nil, refuse(disk.ErrFormat, "log entry %d has fewer data sectors than data descriptors", entrySeq)
				}
				s := lg.sector(start, data)
				data++
				if string(s[:4]) != "data" || uint64(le.Uint32(s[4:]))<<32|uint64(le.Uint32(s[4092:])) != entrySeq {
					return nil, refuse(disk.ErrFormat, "log entry %d: data sector for descriptor %d is invalid", entrySeq, i)
				}
				w.end = w.off + logSector
				w.data = make([]byte, logSector)
				copy(w.data, d[8:16])
				copy(w.data[8:], s[8:8+logDataBytes])
				copy(w.data[8+logDataBytes:], d[4:8])
			default:
				return nil, refuse(disk.ErrFormat, "log entry %d: descriptor %d has the signature %q", entrySeq, i, d[:4])
			}
			if w.end > w.off {
				writes = append(writes, w)
				newSize = max(newSize, w.end)
			}
		}
		// The file grows to the entry's LastFileOffset, rounded to a MiB.
		if last := le.Uint64(h[56:]); last <= maxOffset && int64(last) > newSize {
			newSize = (int64(last) + mib - 1) &^ (mib - 1)
		}
	}
	return &overlay{base: src, size: newSize, patches: resolve(writes)}, nil
}

// patch is a run of the file as the log leaves it: data, or zeros when
// data is nil.
type patch struct {
	off, end int64
	data     []byte
}

// writeHeap orders the writes covering a point, the latest on top.
type writeHeap []*logWrite

func (h writeHeap) Len() int           { return len(h) }
func (h writeHeap) Less(i, j int) bool { return h[i].order > h[j].order }
func (h writeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *writeHeap) Push(x any)        { *h = append(*h, x.(*logWrite)) }
func (h *writeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// resolve turns writes that may overlap, applied in order, into disjoint
// patches in file order: a sweep over their boundaries, the latest write
// covering each piece winning.
func resolve(writes []logWrite) []patch {
	var points []int64
	for _, w := range writes {
		points = append(points, w.off, w.end)
	}
	slices.Sort(points)
	points = slices.Compact(points)
	byStart := make([]*logWrite, len(writes))
	for i := range writes {
		byStart[i] = &writes[i]
	}
	slices.SortFunc(byStart, func(a, b *logWrite) int { return cmp.Compare(a.off, b.off) })
	var active writeHeap
	var out []patch
	next := 0
	for i := 0; i+1 < len(points); i++ {
		p, q := points[i], points[i+1]
		for next < len(byStart) && byStart[next].off <= p {
			heap.Push(&active, byStart[next])
			next++
		}
		for active.Len() > 0 && active[0].end <= p {
			heap.Pop(&active)
		}
		if active.Len() == 0 {
			continue
		}
		w := active[0]
		pt := patch{off: p, end: q}
		if w.data != nil {
			pt.data = w.data[p-w.off : q-w.off]
		} else if n := len(out); n > 0 && out[n-1].data == nil && out[n-1].end == p {
			out[n-1].end = q
			continue
		}
		out = append(out, pt)
	}
	return out
}

// overlay reads a file as the replayed log leaves it: the file's bytes
// (zeros past its end) under the patches.
type overlay struct {
	base    blockio.Source
	size    int64
	patches []patch
}

func (o *overlay) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, refuse(disk.ErrFormat, "read at negative offset %d", off)
	}
	if off >= o.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), o.size-off))
	if err := blockio.ReadPadded(o.base.R, o.base.Size, p[:n], off); err != nil {
		return 0, err
	}
	end := off + int64(n)
	i, _ := slices.BinarySearchFunc(o.patches, off, func(pt patch, off int64) int { return cmp.Compare(pt.end, off+1) })
	for ; i < len(o.patches) && o.patches[i].off < end; i++ {
		pt := o.patches[i]
		lo, hi := max(pt.off, off), min(pt.end, end)
		if pt.data == nil {
			clear(p[lo-off : hi-off])
		} else {
			copy(p[lo-off:hi-off], pt.data[lo-pt.off:])
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
