package qcow2

import (
	"encoding/binary"
	"fmt"
	"os"
)

// wrL2Table is one L2 table (one cluster of big-endian 64-bit entries) held
// by the writer.
type wrL2Table struct {
	l1Index int64
	host    int64 // where the table lives in the file
	buf     []byte
	dirty   bool
	used    uint64 // cache clock at the last use, for LRU eviction
}

func (t *wrL2Table) entry(i int64) uint64 { return binary.BigEndian.Uint64(t.buf[i*8:]) }

func (t *wrL2Table) setEntry(i int64, e uint64) {
	binary.BigEndian.PutUint64(t.buf[i*8:], e)
	t.dirty = true
}

// wrL2Cache is a small write-back cache of L2 tables: writes in virtual
// order touch one table at a time, so a handful is plenty, and memory stays
// bounded whatever the image size.
type wrL2Cache struct {
	clusterSize int64
	capacity    int
	tables      map[int64]*wrL2Table // by L1 index
	last        *wrL2Table           // the most recently used table: the fast path
	clock       uint64
	spare       [][]byte // buffers of evicted tables, for reuse
}

func newWrL2Cache(clusterSize int64, capacity int64) *wrL2Cache {
	return &wrL2Cache{
		clusterSize: clusterSize,
		capacity:    int(capacity),
		tables:      make(map[int64]*wrL2Table, capacity),
	}
}

// get returns the cached table for an L1 index, or nil.
func (c *wrL2Cache) get(l1i int64) *wrL2Table {
	if c.last != nil && c.last.l1Index == l1i {
		return c.last
	}
	t := c.tables[l1i]
	if t != nil {
		c.clock++
		t.used = c.clock
		c.last = t
	}
	return t
}

// evict makes room for one more table, writing the least recently used one
// out if it is dirty.
func (c *wrL2Cache) evict(f *os.File) error {
	if len(c.tables) < c.capacity {
		return nil
	}
	var victim *wrL2Table
	for _, t := range c.tables {
		if victim == nil || t.used < victim.used {
			victim = t
		}
	}
	if err := c.write(f, victim); err != nil {
		return err
	}
	c.remove(victim)
	return nil
}

// add puts the table of L1 index l1i, stored at host, in the cache: read
// from f, or all zeros (a new table) when f is nil. The caller has made room.
func (c *wrL2Cache) add(l1i, host int64, f *os.File) (*wrL2Table, error) {
	var buf []byte
	if n := len(c.spare); n > 0 {
		buf, c.spare = c.spare[n-1], c.spare[:n-1]
		clear(buf)
	} else {
		buf = make([]byte, c.clusterSize)
	}
	t := &wrL2Table{l1Index: l1i, host: host, buf: buf}
	if f == nil {
		t.dirty = true // a new table must reach the file even if it stays empty
	} else if _, err := f.ReadAt(buf, host); err != nil {
		return nil, fmt.Errorf("qcow2: reading back L2 table at %#x: %w", host, err)
	}
	c.clock++
	t.used = c.clock
	c.tables[l1i] = t
	c.last = t
	return t, nil
}

// drop forgets a table without writing it (its clusters are being freed).
func (c *wrL2Cache) drop(l1i int64) {
	if t := c.tables[l1i]; t != nil {
		c.remove(t)
	}
}

func (c *wrL2Cache) remove(t *wrL2Table) {
	delete(c.tables, t.l1Index)
	if c.last == t {
		c.last = nil
	}
	c.spare = append(c.spare, t.buf)
}

func (c *wrL2Cache) write(f *os.File, t *wrL2Table) error {
	if !t.dirty {
		return nil
	}
	if _, err := f.WriteAt(t.buf, t.host); err != nil {
		return fmt.Errorf("qcow2: writing L2 table at %#x: %w", t.host, err)
	}
	t.dirty = false
	return nil
}

// flush writes every dirty table.
func (c *wrL2Cache) flush(f *os.File) error {
	for _, t := range c.tables {
		if err := c.write(f, t); err != nil {
			return err
		}
	}
	return nil
}
