package blockio

import (
	"sync"
	"sync/atomic"
)

// TableCache keeps recently used tables of one image (qcow2 L2 tables, VMDK
// grain tables, ...), keyed by their host offset, up to a fixed number of
// tables; the least recently used ones are evicted first (CLOCK
// approximation). It is safe for concurrent use.
//
// The mutex guards only the map and the clock ring: a table is read from
// the file outside it, so goroutines that need different tables never wait
// for each other's I/O. Goroutines that need the same missing table wait
// for the one that reads it.
type TableCache struct {
	mu     sync.Mutex
	max    int
	tables map[int64]*tableSlot
	ring   []*tableSlot // every slot in tables, in clock order
	hand   int
}

type tableSlot struct {
	key   int64
	ready chan struct{} // closed once data or err is set
	data  []byte
	err   error
	used  atomic.Bool // referenced since the clock hand last passed
}

// NewTableCache returns a cache of at most maxTables tables (at least 4, at
// most 2^20).
func NewTableCache(maxTables int64) *TableCache {
	n := int(max(4, min(maxTables, 1<<20)))
	return &TableCache{max: n, tables: make(map[int64]*tableSlot)}
}

// Get returns the table at key, calling load(buf) to fill a new buffer of
// size bytes when it is not cached. The returned slice must not be modified.
func (c *TableCache) Get(key, size int64, load func([]byte) error) ([]byte, error) {
	c.mu.Lock()
	if s, ok := c.tables[key]; ok {
		c.mu.Unlock()
		s.used.Store(true)
		<-s.ready
		return s.data, s.err
	}
	s := &tableSlot{key: key, ready: make(chan struct{})}
	c.insertLocked(s)
	c.mu.Unlock()

	buf := make([]byte, size)
	if err := load(buf); err != nil {
		s.err = err
		// Forget the failure, so that a transient I/O error is retried
		// by the next reader (waiters already holding s see err).
		c.mu.Lock()
		if c.tables[key] == s {
			delete(c.tables, key)
		}
		c.mu.Unlock()
	} else {
		s.data = buf
	}
	close(s.ready)
	return s.data, s.err
}

// insertLocked adds s, evicting the first slot the clock hand finds unused.
func (c *TableCache) insertLocked(s *tableSlot) {
	c.tables[s.key] = s
	if len(c.ring) < c.max {
		c.ring = append(c.ring, s)
		return
	}
	// Two turns at most: the first clears every used flag.
	for range 2 * len(c.ring) {
		victim := c.ring[c.hand]
		if victim.used.Swap(false) && c.tables[victim.key] == victim {
			c.hand = (c.hand + 1) % len(c.ring)
			continue
		}
		break
	}
	victim := c.ring[c.hand]
	if c.tables[victim.key] == victim {
		delete(c.tables, victim.key)
	}
	c.ring[c.hand] = s
	c.hand = (c.hand + 1) % len(c.ring)
}

// Clear drops every table.
func (c *TableCache) Clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tables = make(map[int64]*tableSlot)
	c.ring = nil
	c.hand = 0
}
