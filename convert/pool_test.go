package convert

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// budgetImage is a memImage that counts the bytes read and not yet
// released (by its owner's writer), to watch a pool's budget.
type budgetImage struct {
	*memImage
	live, peak *atomic.Int64
}

func (c *budgetImage) ReadAt(p []byte, off int64) (int, error) {
	n := c.live.Add(int64(len(p)))
	for {
		old := c.peak.Load()
		if n <= old || c.peak.CompareAndSwap(old, n) {
			break
		}
	}
	return c.memImage.ReadAt(p, off)
}

// TestPoolSharedByCopies: eight copies at once, plain and compressed, on
// one pool of two workers and a budget of 2 MiB: each copy is right, and
// the bytes read and not yet written never pass the budget (plus a chunk
// per copy being handed over).
func TestPoolSharedByCopies(t *testing.T) {
	const budget = 2 << 20
	pool := NewPool(2, budget)
	defer pool.Close()
	var live, peak atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range 8 {
		wg.Go(func() {
			size := (3 + i) << 20
			data, exts := pattern(size, uint64(i+1))
			src := &budgetImage{memImage: &memImage{data: data, exts: exts, fail: -1}, live: &live, peak: &peak}
			var last int64
			release := func(p Progress) {
				// What was read up to here is written now.
				live.Add(-(p.Data - last))
				last = p.Data
			}
			if i%2 == 0 {
				dst := &memWriter{data: make([]byte, size), ordered: true}
				if _, err := Copy(context.Background(), dst, src, Options{Pool: pool, ChunkSize: 256 << 10, Progress: release}); err != nil {
					errs[i] = err
					return
				}
				if !bytes.Equal(dst.data, data) || !dst.ordered {
					errs[i] = fmt.Errorf("copy %d: wrong or unordered", i)
				}
				return
			}
			dst := newFakeCompressor(int64(size), 64<<10)
			if _, err := Copy(context.Background(), dst, src, Options{Pool: pool, ChunkSize: 256 << 10, Progress: release}); err != nil {
				errs[i] = err
				return
			}
			if len(dst.problems) > 0 || !bytes.Equal(dst.data, data) {
				errs[i] = fmt.Errorf("compressed copy %d: %v", i, dst.problems)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	// A compressed chunk counts twice against the budget, a plain one
	// once: the bytes read in flight stay within it, give or take the
	// chunk each copy's writer holds.
	if limit := int64(budget + 8*(256<<10)); peak.Load() > limit {
		t.Errorf("%d bytes read and not yet written at the peak, want at most %d", peak.Load(), limit)
	}
	t.Logf("peak in flight: %d bytes (budget %d)", peak.Load(), budget)
}

// TestPoolCancel: a copy on a shared pool stops when its context ends and
// leaves the pool usable by the others.
func TestPoolCancel(t *testing.T) {
	pool := NewPool(1, 1<<20)
	defer pool.Close()
	data, exts := pattern(8<<20, 3)
	ctx, cancel := context.WithCancel(context.Background())
	dst := &memWriter{data: make([]byte, len(data)), ordered: true}
	_, err := Copy(ctx, dst, &memImage{data: data, exts: exts, fail: -1}, Options{Pool: pool, Progress: func(p Progress) {
		if p.Done > 1<<20 {
			cancel()
		}
	}})
	if err == nil {
		t.Fatal("a cancelled copy succeeded")
	}
	dst = &memWriter{data: make([]byte, len(data)), ordered: true}
	if _, err := Copy(context.Background(), dst, &memImage{data: data, exts: exts, fail: -1}, Options{Pool: pool}); err != nil || !bytes.Equal(dst.data, data) {
		t.Fatalf("the pool after a cancelled copy: %v", err)
	}
}
