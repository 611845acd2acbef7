package convert

import (
	"context"
	"sync"

	"golang.org/x/sync/semaphore"
)

// Pool is the set of workers that reads and decompresses chunks for copies,
// and a bound on the bytes their chunks hold. Copies given the same Pool
// (Options.Pool) share them: N images built at once keep the cores busy
// without starting N × cores workers, and their buffers stay within one
// budget whatever N is. A Copy without a Pool makes its own.
type Pool struct {
	tasks   chan func()
	workers int
	memory  *semaphore.Weighted // nil: each copy's Depth bounds it alone
	limit   int64
	wg      sync.WaitGroup
}

// NewPool starts workers goroutines (at least one). memory, when above 0,
// bounds the bytes of the chunks in flight in all the copies that use the
// pool together.
func NewPool(workers int, memory int64) *Pool {
	p := &Pool{tasks: make(chan func()), workers: max(workers, 1), limit: memory}
	if memory > 0 {
		p.memory = semaphore.NewWeighted(memory)
	}
	for range p.workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for task := range p.tasks {
				task()
			}
		}()
	}
	return p
}

// Workers is how many goroutines the pool runs.
func (p *Pool) Workers() int { return p.workers }

// Close stops the workers once the tasks given to them are done. No copy
// may use the pool any more.
func (p *Pool) Close() {
	close(p.tasks)
	p.wg.Wait()
}

// run hands task to a worker; false when ctx ended first (task will not
// run). Waiting senders are served in turn, so copies share the workers.
func (p *Pool) run(ctx context.Context, task func()) bool {
	select {
	case p.tasks <- task:
		return true
	case <-ctx.Done():
		return false
	}
}

// reserve takes n bytes of the pool's budget for a chunk (never more than
// the whole budget, so that one large chunk cannot wait forever); it
// returns how much was taken, to give back with unreserve.
func (p *Pool) reserve(ctx context.Context, n int64) (int64, error) {
	if p.memory == nil {
		return 0, nil
	}
	n = min(n, p.limit)
	if err := p.memory.Acquire(ctx, n); err != nil {
		return 0, err
	}
	return n, nil
}

func (p *Pool) unreserve(n int64) {
	if n > 0 {
		p.memory.Release(n)
	}
}
