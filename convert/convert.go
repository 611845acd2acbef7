// Package convert copies one image into another: the parallel extent
// pipeline. A producer walks the source's extents and skips zero runs
// without reading them; workers read (and so decompress) data chunks in
// parallel and find the zero blocks inside them; the caller's goroutine
// writes the results in virtual order, so the writer can allocate its host
// clusters sequentially. Memory is bounded by Workers and Depth, never by
// the image size. A destination that compresses (a disk.Compressor) gets
// whole units compressed on every core and stored in order (compress.go).
package convert

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// Progress is reported after each chunk is written, in virtual order.
type Progress struct {
	Done  int64 // virtual bytes handled (written or skipped as zeros)
	Total int64
	// Data is how many bytes of the source's data (not holes or zero
	// runs) have been handled, and DataTotal how many there are: -1 until
	// the map of the whole source has been read, beside the copy. Time
	// goes to data, so they tell how long is left.
	Data, DataTotal int64
}

// Options tune Copy. The zero value is a good default.
type Options struct {
	// Length is how many virtual bytes to copy from offset 0; 0 means the
	// whole source. A Length beyond the source size is clipped to it.
	Length int64
	// Workers reading and decompressing in parallel; 0 means GOMAXPROCS,
	// at most maxWorkers and as far as maxInFlight allows.
	Workers int
	// ChunkSize is the unit of work (bytes); 0 means DefaultChunkSize.
	ChunkSize int64
	// Depth is how many chunks may be in flight; 0 means 2*Workers+2
	// (within maxInFlight when Workers is 0 too).
	Depth int
	// ZeroBlock is the zero-detection granularity: aligned blocks of this
	// many bytes that are all zero are not written. 0 means 4 KiB. Set it to
	// the destination's cluster size to avoid splitting writes in clusters
	// that get allocated anyway.
	ZeroBlock int64
	// Progress, when set, is called from the writing goroutine.
	Progress func(Progress)
	// Pool, when set, reads the chunks instead of workers of this copy's
	// own, and bounds their memory with the other copies that share it;
	// Workers is then the pool's.
	Pool *Pool
}

// Stats says what a copy did.
type Stats struct {
	BytesRead    int64 // data bytes read from the source
	BytesWritten int64 // bytes handed to the destination (virtual bytes, when compressed)
	BytesStored  int64 // bytes the destination stored for them, when it compresses
	ZeroSkipped  int64 // virtual bytes never written because they are zero
}

type chunk struct {
	off, n int64
	buf    []byte
	err    error
	done   chan struct{}
	// zeroOnly: nothing to read; only advances progress to off+n.
	zeroOnly bool
	reserved int64 // bytes of the pool's budget held until written
}

// DefaultChunkSize is small enough that a chunk is still in the CPU's
// cache when it is written (the figures are in the commit that chose it).
// Chunks grow only to hold whole clusters of the source or the
// destination (up to 2 MiB).
const DefaultChunkSize = 512 << 10

// maxSourceCluster bounds the chunk a source's cluster size may ask for
// (qcow2's largest cluster).
const maxSourceCluster = 2 << 20

func roundUp(n, unit int64) int64 { return (n + unit - 1) / unit * unit }

// maxInFlight bounds the memory of the chunks in flight when the caller
// leaves Workers and Depth to Copy: many cores must not mean many MiB.
const maxInFlight = 32 << 20

// maxWorkers is the most workers Copy starts by itself: 16 inflate 8 GB/s,
// more than a disk writes, and each holds its own buffers and tables.
const maxWorkers = 16

// plan settles the chunk size, the number of workers and the queue depth:
// the caller's where given, else one worker per core and two chunks in
// flight per worker (plus two), within maxInFlight.
func plan(src disk.Image, opt Options, zeroBlock int64) (chunkSize int64, workers, depth int) {
	chunkSize = opt.ChunkSize
	if chunkSize <= 0 {
		chunkSize = DefaultChunkSize
	}
	// Whole source clusters per chunk: a compressed cluster cut between
	// two chunks would be decompressed by both workers.
	if d, ok := src.(disk.Describer); ok {
		if cs := d.Info().ClusterSize; cs > 0 && cs <= maxSourceCluster {
			chunkSize = roundUp(chunkSize, cs)
		}
	}
	chunkSize = roundUp(chunkSize, zeroBlock)

	limit := max(2, int(maxInFlight/chunkSize))
	workers = opt.Workers
	if opt.Pool != nil {
		workers = opt.Pool.Workers()
	}
	if workers <= 0 {
		workers = min(runtime.GOMAXPROCS(0), limit, maxWorkers)
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

// extentWindow is how much of the source one Extents call describes; large
// so that sparse terabytes cost few calls.
const extentWindow = 1 << 30

// Copy writes the first opt.Length bytes of src into dst, which must read as
// zeros where nothing is written (a freshly created image). Zero runs are
// never written. When dst is a disk.Compressor, the data is compressed in
// its units, on every core, and stored in offset order.
func Copy(ctx context.Context, dst disk.Writer, src disk.Image, opt Options) (Stats, error) {
	total := src.Size()
	if opt.Length > 0 && opt.Length < total {
		total = opt.Length
	}
	if c, ok := dst.(disk.Compressor); ok {
		return copyCompressed(ctx, c, src, total, opt)
	}
	zeroBlock := opt.ZeroBlock
	if zeroBlock <= 0 {
		zeroBlock = 4096
	}
	chunkSize, workers, depth := plan(src, opt, zeroBlock)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	pool := sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}
	ordered := make(chan *chunk, depth)
	workerPool := opt.Pool
	if workerPool == nil {
		workerPool = NewPool(workers, 0)
		defer workerPool.Close()
	}
	// read is a worker's task: read a chunk into a pooled buffer.
	read := func(c *chunk) {
		if ctx.Err() == nil {
			bp := pool.Get().(*[]byte)
			c.buf = (*bp)[:c.n]
			c.err = readFull(src, c.buf, c.off)
		}
		close(c.done)
	}

	// Producer: walk the extents, cut data into chunks, in order.
	var produceErr error
	go func() {
		defer close(ordered)
		for win := int64(0); win < total; win += extentWindow {
			n := min(extentWindow, total-win)
			exts, err := src.Extents(win, n)
			if err != nil {
				produceErr = &SourceError{fmt.Errorf("reading the map of the source at offset %d: %w", win, err)}
				return
			}
			for _, e := range exts {
				if e.Zero {
					c := &chunk{off: e.Offset, n: e.Length, zeroOnly: true, done: make(chan struct{})}
					close(c.done)
					select {
					case ordered <- c:
					case <-ctx.Done():
						return
					}
					continue
				}
				for off := e.Offset; off < e.End(); {
					// Cut at chunk-aligned boundaries so writes stay aligned.
					next := min((off/chunkSize+1)*chunkSize, e.End())
					c := &chunk{off: off, n: next - off, done: make(chan struct{})}
					if c.reserved, err = workerPool.reserve(ctx, c.n); err != nil {
						return
					}
					select {
					case ordered <- c:
					case <-ctx.Done():
						workerPool.unreserve(c.reserved)
						return
					}
					if !workerPool.run(ctx, func() { read(c) }) {
						close(c.done)
						return
					}
					off = next
				}
			}
		}
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
		if err == nil && c.err != nil {
			err = c.err
		}
		if err == nil && !c.zeroOnly {
			st.BytesRead += c.n
			var written, skipped int64
			written, skipped, err = writeNonZero(dst, c.buf, c.off, zeroBlock)
			st.BytesWritten += written
			st.ZeroSkipped += skipped
		} else if c.zeroOnly {
			st.ZeroSkipped += c.n
		}
		if c.buf != nil {
			b := c.buf[:cap(c.buf)]
			pool.Put(&b)
			c.buf = nil
		}
		workerPool.unreserve(c.reserved)
		if err != nil {
			cancel()
			continue // drain so the producer and workers can finish
		}
		done = c.off + c.n
		if !c.zeroOnly {
			data += c.n
		}
		if opt.Progress != nil {
			opt.Progress(Progress{Done: done, Total: total, Data: data, DataTotal: dataTotal.Load()})
		}
	}
	cancel() // the map need not be finished
	<-mapped
	if err == nil {
		err = produceErr
	}
	if err == nil && done != total && total > 0 {
		err = fmt.Errorf("convert: the source's map covered %d of %d bytes", done, total)
	}
	return st, err
}

// mapData reads the map of the whole source beside the copy, when progress
// is wanted, to tell how much data there is and so how long is left: -1
// until it is known. mapped is closed when it is done or cancelled.
func mapData(ctx context.Context, src disk.Image, total int64, wanted bool) (dataTotal *atomic.Int64, mapped chan struct{}) {
	dataTotal = new(atomic.Int64)
	dataTotal.Store(-1)
	mapped = make(chan struct{})
	if !wanted {
		close(mapped)
		return dataTotal, mapped
	}
	go func() {
		defer close(mapped)
		var sum int64
		for win := int64(0); win < total; win += extentWindow {
			if ctx.Err() != nil {
				return
			}
			exts, err := src.Extents(win, min(extentWindow, total-win))
			if err != nil {
				return // the copy reports it
			}
			for _, e := range exts {
				if !e.Zero {
					sum += e.Length
				}
			}
		}
		dataTotal.Store(sum)
	}()
	return dataTotal, mapped
}

// SourceError is a failure to read the source image (a malformed or
// truncated input), as opposed to one to write the destination.
type SourceError struct{ Err error }

func (e *SourceError) Error() string { return e.Err.Error() }
func (e *SourceError) Unwrap() error { return e.Err }

// readFull reads len(p) bytes at off; a short read is an error because the
// source's extents promised data there.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	if err := blockio.ReadFull(r, p, off); err != nil {
		return &SourceError{fmt.Errorf("reading %d bytes of the source at offset %d: %w", len(p), off, err)}
	}
	return nil
}

// writeNonZero writes the runs of buf that are not whole zero blocks.
func writeNonZero(dst io.WriterAt, buf []byte, off, block int64) (written, skipped int64, err error) {
	n := int64(len(buf))
	runStart := int64(-1)
	flush := func(end int64) error {
		if runStart < 0 {
			return nil
		}
		if _, err := dst.WriteAt(buf[runStart:end], off+runStart); err != nil {
			return fmt.Errorf("writing %d bytes at offset %d: %w", end-runStart, off+runStart, err)
		}
		written += end - runStart
		runStart = -1
		return nil
	}
	// Blocks are aligned to virtual offsets, not to the buffer start.
	for pos := int64(0); pos < n; {
		end := min(((off+pos)/block+1)*block-off, n)
		if blockio.IsZero(buf[pos:end]) {
			if err := flush(pos); err != nil {
				return written, skipped, err
			}
			skipped += end - pos
		} else if runStart < 0 {
			runStart = pos
		}
		pos = end
	}
	return written, skipped, flush(n)
}
