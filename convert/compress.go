package convert

import (
	"context"
	"fmt"
	"runtime"
	"sync"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// The compressing pipeline: when the destination is a disk.Compressor,
// the source is read in whole units of the destination (a qcow2 cluster, a
// VMDK grain), in increasing offset order; units that are holes or all
// zeros are skipped; the others are compressed by one worker per core, and
// the caller's goroutine hands what they stored to WriteStored in offset
// order. A job is a chunk of several units, so that reading and handing
// over cost little per unit; the chunks in flight are bounded in bytes
// (maxCompressInFlight), whatever the image size and the number of cores.

// maxCompressInFlight bounds the memory of the chunks in flight in a
// compressed copy: a chunk holds its source bytes and what its units
// compress to (at most about as much again), so each counts twice.
const maxCompressInFlight = 32 << 20

// compressChunkSize is the default size of a compressed copy's job: a few
// units of 64 KiB, enough that handing them over costs nothing.
const compressChunkSize = 512 << 10

// storedUnit is what Compress made of one unit.
type storedUnit struct {
	off    int64
	n      int64 // virtual bytes of the unit
	stored []byte
}

type compressChunk struct {
	off, n   int64
	buf      []byte
	units    []storedUnit
	read     int64 // bytes read from the source
	zeros    int64 // virtual bytes of units found all zero
	err      error
	done     chan struct{}
	zeroOnly bool
}

// planCompressed settles the chunk size (whole units, whole source
// clusters when they are powers of two like the unit), the workers (one per
// core unless told) and the depth, within maxCompressInFlight.
func planCompressed(src disk.Image, opt Options, unit int64) (chunkSize int64, workers, depth int) {
	chunkSize = opt.ChunkSize
	if chunkSize <= 0 {
		chunkSize = compressChunkSize
	}
	if d, ok := src.(disk.Describer); ok {
		if cs := d.Info().ClusterSize; cs > 0 && cs <= maxSourceCluster {
			chunkSize = roundUp(chunkSize, cs)
		}
	}
	chunkSize = roundUp(chunkSize, unit)

	limit := max(2, int(maxCompressInFlight/(2*chunkSize)))
	workers = opt.Workers
	if workers <= 0 {
		workers = min(runtime.GOMAXPROCS(0), limit)
	}
	depth = opt.Depth
	if depth <= 0 {
		depth = 2*workers + 2
		if opt.Workers <= 0 {
			depth = min(depth, max(limit, workers))
		}
	}
	return chunkSize, workers, depth
}

// copyCompressed is Copy when dst is a Compressor.
func copyCompressed(ctx context.Context, dst disk.Compressor, src disk.Image, total int64, opt Options) (Stats, error) {
	unit := dst.CompressUnit()
	if unit <= 0 {
		return Stats{}, fmt.Errorf("convert: the destination compresses in units of %d bytes", unit)
	}
	chunkSize, workers, depth := planCompressed(src, opt, unit)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	pool := sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}
	jobs := make(chan *compressChunk, depth)
	ordered := make(chan *compressChunk, depth)

	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range jobs {
				compressJob(ctx, dst, src, c, unit, &pool)
				close(c.done)
			}
		}()
	}

	var produceErr error
	go func() {
		defer close(ordered)
		defer close(jobs)
		produceErr = produceUnits(ctx, src, total, unit, chunkSize, ordered, jobs)
	}()

	dataTotal, mapped := mapData(ctx, src, total, opt.Progress != nil)

	var st Stats
	var err error
	var done, data int64
	for c := range ordered {
		<-c.done
		if err == nil {
			err = ctx.Err()
		}
		if err == nil {
			err = c.err
		}
		if err == nil {
			st.BytesRead += c.read
			if c.zeroOnly {
				st.ZeroSkipped += c.n
			}
			st.ZeroSkipped += c.zeros
			for _, u := range c.units {
				if err = ctx.Err(); err != nil {
					break
				}
				if err = dst.WriteStored(u.off, u.stored); err != nil {
					err = fmt.Errorf("writing the %d bytes stored for offset %d: %w", len(u.stored), u.off, err)
					break
				}
				st.BytesWritten += u.n
				st.BytesStored += int64(len(u.stored))
			}
		}
		c.units = nil
		if c.buf != nil {
			b := c.buf[:cap(c.buf)]
			pool.Put(&b)
			c.buf = nil
		}
		if err != nil {
			cancel()
			continue // drain so the producer and workers can finish
		}
		done = c.off + c.n
		if !c.zeroOnly {
			data += c.n
		}
		if opt.Progress != nil {
			// Data counts whole units, which may reach into holes.
			dt, shown := dataTotal.Load(), data
			if dt >= 0 {
				shown = min(shown, dt)
			}
			opt.Progress(Progress{Done: done, Total: total, Data: shown, DataTotal: dt})
		}
	}
	wg.Wait()
	cancel()
	<-mapped
	if err == nil {
		err = produceErr
	}
	if err == nil && done != total && total > 0 {
		err = fmt.Errorf("convert: the source's map covered %d of %d bytes", done, total)
	}
	return st, err
}

// compressJob reads a chunk and compresses its units that are not all
// zeros. The stored bytes are the Compressor's; the read buffer goes back
// to the pool once they are written.
func compressJob(ctx context.Context, dst disk.Compressor, src disk.Image, c *compressChunk, unit int64, pool *sync.Pool) {
	if ctx.Err() != nil {
		return
	}
	bp := pool.Get().(*[]byte)
	c.buf = (*bp)[:c.n]
	if c.err = readFull(src, c.buf, c.off); c.err != nil {
		return
	}
	c.read = c.n
	for pos := int64(0); pos < c.n; pos += unit {
		if ctx.Err() != nil {
			return
		}
		u := c.buf[pos:min(pos+unit, c.n)]
		if blockio.IsZero(u) {
			c.zeros += int64(len(u))
			continue
		}
		off := c.off + pos
		stored, err := dst.Compress(off, u)
		if err != nil {
			c.err = fmt.Errorf("compressing the %d bytes at offset %d: %w", len(u), off, err)
			return
		}
		c.units = append(c.units, storedUnit{off: off, n: int64(len(u)), stored: stored})
	}
}

// produceUnits walks the source's extents and sends, in offset order,
// chunks of whole units that hold some data (to ordered, and to jobs for
// the workers) and zero-only chunks for the whole units between them (to
// ordered only, for progress). A unit that a data extent touches is read
// whole: its other bytes read as zeros.
func produceUnits(ctx context.Context, src disk.Image, total, unit, chunkSize int64, ordered, jobs chan<- *compressChunk) error {
	pos := int64(0) // everything below has been sent
	send := func(c *compressChunk, job bool) bool {
		select {
		case ordered <- c:
		case <-ctx.Done():
			return false
		}
		if !job {
			return true
		}
		select {
		case jobs <- c:
			return true
		case <-ctx.Done():
			close(c.done)
			return false
		}
	}
	skipTo := func(end int64) bool {
		if end <= pos {
			return true
		}
		c := &compressChunk{off: pos, n: end - pos, zeroOnly: true, done: make(chan struct{})}
		close(c.done)
		pos = end
		return send(c, false)
	}
	for win := int64(0); win < total; win += extentWindow {
		exts, err := src.Extents(win, min(extentWindow, total-win))
		if err != nil {
			return &SourceError{fmt.Errorf("reading the map of the source at offset %d: %w", win, err)}
		}
		for _, e := range exts {
			if e.Zero {
				// Up to the last whole unit the hole covers (the next
				// extent's data may share the unit it ends in).
				end := e.End() / unit * unit
				if e.End() >= total {
					end = total
				}
				if !skipTo(end) {
					return nil
				}
				continue
			}
			start := max(pos, e.Offset/unit*unit)
			end := min(total, roundUp(e.End(), unit))
			if !skipTo(start) {
				return nil
			}
			for off := start; off < end; {
				next := min((off/chunkSize+1)*chunkSize, end)
				if !send(&compressChunk{off: off, n: next - off, done: make(chan struct{})}, true) {
					return nil
				}
				off = next
			}
			pos = max(pos, end)
		}
	}
	skipTo(total)
	return nil
}
