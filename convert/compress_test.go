package convert

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// fakeCompressor is a disk.Compressor in memory. Compress "stores" a unit
// as its offset followed by its bytes reversed; WriteStored undoes that and
// checks the contract: offsets of whole units, increasing, no zero units,
// one goroutine at a time.
type fakeCompressor struct {
	unit int64
	data []byte

	calls      atomic.Int64
	onCompress func(n int64) error // called with the count of calls so far
	failWrite  int64               // WriteStored of this offset fails; -1 never
	readEnd    *atomic.Int64       // the source's highest offset read, for the in-flight bound
	maxAhead   int64               // the most the source was read ahead of WriteStored

	mu       sync.Mutex // held by WriteStored: a second goroutine would be a bug
	lastOff  int64
	problems []string
}

func newFakeCompressor(size, unit int64) *fakeCompressor {
	return &fakeCompressor{unit: unit, data: make([]byte, size), failWrite: -1, lastOff: -1}
}

func (f *fakeCompressor) WriteAt(p []byte, off int64) (int, error) {
	return 0, errors.New("WriteAt called on a compressing writer")
}
func (f *fakeCompressor) Resize(int64, bool) error { return nil }
func (f *fakeCompressor) Close() error             { return nil }
func (f *fakeCompressor) CompressUnit() int64      { return f.unit }

func (f *fakeCompressor) Compress(off int64, unit []byte) ([]byte, error) {
	n := f.calls.Add(1)
	if f.onCompress != nil {
		if err := f.onCompress(n); err != nil {
			return nil, err
		}
	}
	out := binary.BigEndian.AppendUint64(nil, uint64(off))
	for i := len(unit) - 1; i >= 0; i-- {
		out = append(out, unit[i])
	}
	return out, nil
}

func (f *fakeCompressor) WriteStored(off int64, stored []byte) error {
	if !f.mu.TryLock() {
		f.problems = append(f.problems, "WriteStored called concurrently")
		return nil
	}
	defer f.mu.Unlock()
	if off == f.failWrite {
		return errors.New("injected write failure")
	}
	if f.readEnd != nil {
		f.maxAhead = max(f.maxAhead, f.readEnd.Load()-off)
	}
	bad := func(format string, args ...any) { f.problems = append(f.problems, fmt.Sprintf(format, args...)) }
	if got := int64(binary.BigEndian.Uint64(stored)); got != off {
		bad("stored bytes of %d handed over for %d", got, off)
	}
	unit := stored[8:]
	if off%f.unit != 0 || off <= f.lastOff {
		bad("unit at %d after %d", off, f.lastOff)
	}
	if want := min(f.unit, int64(len(f.data))-off); int64(len(unit)) != want {
		bad("unit at %d has %d bytes, want %d", off, len(unit), want)
	}
	f.lastOff = off
	plain := f.data[off : off+int64(len(unit))]
	for i := range unit {
		plain[len(unit)-1-i] = unit[i]
	}
	if blockio.IsZero(plain) {
		bad("a unit of zeros at %d", off)
	}
	return nil
}

func TestCopyCompressed(t *testing.T) {
	for _, size := range []int{3<<20 + 4096 + 511, 1, 511, 64 << 10, 5 << 20} {
		data, exts := pattern(size+4096, uint64(size))
		data = data[:size]
		exts = clip(exts, int64(size))
		for _, workers := range []int{1, 3, runtime.GOMAXPROCS(0) + 2} {
			for _, unit := range []int64{64 << 10, 2 << 20} {
				t.Run(fmt.Sprintf("size%d/w%d/unit%d", size, workers, unit), func(t *testing.T) {
					src := &memImage{data: data, exts: exts, fail: -1}
					dst := newFakeCompressor(int64(size), unit)
					var last Progress
					st, err := Copy(context.Background(), dst, src, Options{Workers: workers, Progress: func(p Progress) {
						if p.Done < last.Done || p.Data < last.Data || p.Total != int64(size) || (p.DataTotal >= 0 && p.Data > p.DataTotal) {
							t.Errorf("progress %+v after %+v", p, last)
						}
						last = p
					}})
					if err != nil {
						t.Fatal(err)
					}
					if len(dst.problems) > 0 {
						t.Fatal(dst.problems)
					}
					if !bytes.Equal(dst.data, data) {
						t.Fatal("the stored units do not give back the source")
					}
					if last.Done != int64(size) {
						t.Errorf("progress ended at %d of %d", last.Done, size)
					}
					if st.BytesWritten+st.ZeroSkipped != int64(size) || st.BytesStored != st.BytesWritten+8*dst.calls.Load() {
						t.Errorf("stats %+v for %d bytes, %d units", st, size, dst.calls.Load())
					}
				})
			}
		}
	}
}

// clip cuts a list of extents at size.
func clip(exts []disk.Extent, size int64) []disk.Extent {
	var out []disk.Extent
	for _, e := range exts {
		if e.Offset >= size {
			break
		}
		e.Length = min(e.Length, size-e.Offset)
		out = append(out, e)
	}
	return out
}

// Units of zeros are skipped whether the source says they are holes or
// stores them as data; a unit a data extent only touches is still read.
func TestCopyCompressedSkipsZeros(t *testing.T) {
	const unit = 64 << 10
	size := int64(1 << 20)
	data := make([]byte, size)
	data[3*unit+5] = 1 // in a data extent
	data[6*unit-1] = 2 // the last byte of a unit whose extent starts mid-unit
	data[9*unit] = 3   // the first byte of a data extent ending mid-unit
	exts := []disk.Extent{
		{Offset: 0, Length: 4 * unit},                      // data: units 0-2 are zeros
		{Offset: 4 * unit, Length: unit + 100, Zero: true}, // hole into unit 5
		{Offset: 5*unit + 100, Length: unit - 100},         // data: rest of unit 5
		{Offset: 6 * unit, Length: 3 * unit, Zero: true},   // hole
		{Offset: 9 * unit, Length: 10},                     // data: 10 bytes of unit 9
		{Offset: 9*unit + 10, Length: size - 9*unit - 10, Zero: true},
	}
	src := &memImage{data: data, exts: exts, fail: -1}
	dst := newFakeCompressor(size, unit)
	st, err := Copy(context.Background(), dst, src, Options{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(dst.problems) > 0 {
		t.Fatal(dst.problems)
	}
	if !bytes.Equal(dst.data, data) {
		t.Fatal("the stored units do not give back the source")
	}
	if n := dst.calls.Load(); n != 3 {
		t.Errorf("%d units compressed, want 3 (units 3, 5 and 9)", n)
	}
	if st.ZeroSkipped != size-3*unit || st.BytesWritten != 3*unit {
		t.Errorf("stats %+v", st)
	}

	// All zeros stored as data: nothing is compressed at all.
	src = &memImage{data: make([]byte, size), exts: []disk.Extent{{Offset: 0, Length: size}}, fail: -1}
	dst = newFakeCompressor(size, unit)
	st, err = Copy(context.Background(), dst, src, Options{})
	if err != nil || dst.calls.Load() != 0 || st.ZeroSkipped != size || st.BytesRead != size {
		t.Errorf("zeros as data: %v, %d units compressed, stats %+v", err, dst.calls.Load(), st)
	}
}

func TestCopyCompressedErrors(t *testing.T) {
	size := 4 << 20
	data, _ := pattern(size, 7)
	for i := range data {
		data[i] |= 1 // no zero units
	}
	exts := []disk.Extent{{Offset: 0, Length: int64(size)}}
	const unit = 64 << 10

	t.Run("source", func(t *testing.T) {
		src := &memImage{data: data, exts: exts, fail: 2<<20 + 5}
		_, err := Copy(context.Background(), newFakeCompressor(int64(size), unit), src, Options{Workers: 3})
		var se *SourceError
		if !errors.As(err, &se) {
			t.Fatalf("got %v, want a *SourceError", err)
		}
	})
	t.Run("compress", func(t *testing.T) {
		dst := newFakeCompressor(int64(size), unit)
		boom := errors.New("boom")
		dst.onCompress = func(n int64) error {
			if n == 20 {
				return boom
			}
			return nil
		}
		_, err := Copy(context.Background(), dst, &memImage{data: data, exts: exts, fail: -1}, Options{Workers: 3})
		var se *SourceError
		if !errors.Is(err, boom) || errors.As(err, &se) {
			t.Fatalf("got %v, want the compressor's error, not a source error", err)
		}
	})
	t.Run("write", func(t *testing.T) {
		dst := newFakeCompressor(int64(size), unit)
		dst.failWrite = 10 * unit
		_, err := Copy(context.Background(), dst, &memImage{data: data, exts: exts, fail: -1}, Options{Workers: 3})
		var se *SourceError
		if err == nil || errors.As(err, &se) {
			t.Fatalf("got %v, want the writer's error", err)
		}
		if dst.lastOff != 9*unit {
			t.Errorf("units stored up to %d after the failure at %d", dst.lastOff, 10*unit)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		dst := newFakeCompressor(int64(size), unit)
		dst.onCompress = func(n int64) error {
			if n == 5 {
				cancel()
			}
			return nil
		}
		_, err := Copy(ctx, dst, &memImage{data: data, exts: exts, fail: -1}, Options{Workers: 3})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		if n := dst.calls.Load(); n > 5+3*(compressChunkSize/unit) {
			t.Errorf("%d units compressed after the cancellation at the 5th", n)
		}
	})
}

// countingImage records the highest offset read.
type countingImage struct {
	*memImage
	readEnd atomic.Int64
}

func (c *countingImage) ReadAt(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	for {
		cur := c.readEnd.Load()
		if end <= cur || c.readEnd.CompareAndSwap(cur, end) {
			break
		}
	}
	return c.memImage.ReadAt(p, off)
}

// The source is never read further ahead of the writer than the chunks in
// flight, whatever the image size.
func TestCopyCompressedBoundsInFlight(t *testing.T) {
	size := 32 << 20
	data := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7}, size/7+1)[:size]
	src := &countingImage{memImage: &memImage{data: data, exts: []disk.Extent{{Offset: 0, Length: int64(size)}}, fail: -1}}
	const unit = 64 << 10
	dst := newFakeCompressor(int64(size), unit)
	dst.readEnd = &src.readEnd
	opt := Options{Workers: 4, Depth: 6}
	chunk, _, depth := planCompressed(src, opt, unit)
	if _, err := Copy(context.Background(), dst, src, opt); err != nil {
		t.Fatal(err)
	}
	if bound := int64(depth+1) * chunk; dst.maxAhead > bound || dst.maxAhead <= 0 {
		t.Errorf("the source was read %d bytes ahead of the writer; bound %d", dst.maxAhead, bound)
	}

	// Left to itself, a copy keeps within maxCompressInFlight on any
	// number of cores, with any unit.
	for _, unit := range []int64{512, 64 << 10, 2 << 20} {
		for _, procs := range []int{1, 2, 64, 1024} {
			old := runtime.GOMAXPROCS(procs)
			chunk, workers, depth := planCompressed(src, Options{}, unit)
			runtime.GOMAXPROCS(old)
			if 2*chunk*int64(depth) > maxCompressInFlight || workers < 1 || depth < workers || chunk%unit != 0 {
				t.Errorf("unit %d, %d cores: chunk %d, %d workers, depth %d", unit, procs, chunk, workers, depth)
			}
		}
	}
}
