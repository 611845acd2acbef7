package qcow2

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// wrRange is a run of host clusters: [start, start+n), in cluster indices.
type wrRange struct{ start, n int64 }

// wrFreeList holds the host clusters below the writer's end of file that
// nothing uses, sorted and coalesced. It stays small: the writer frees only
// a moved L1 table and what a shrink drops.
type wrFreeList struct{ ranges []wrRange }

// add marks [start, start+n) free. The clusters must not be free already.
func (l *wrFreeList) add(start, n int64) {
	if n <= 0 {
		return
	}
	r := l.ranges
	i := sort.Search(len(r), func(i int) bool { return r[i].start > start })
	// Merge with the range before and the range after when they touch.
	if i > 0 && r[i-1].start+r[i-1].n == start {
		r[i-1].n += n
		if i < len(r) && r[i-1].start+r[i-1].n == r[i].start {
			r[i-1].n += r[i].n
			l.ranges = append(r[:i], r[i+1:]...)
		}
		return
	}
	if i < len(r) && start+n == r[i].start {
		r[i].start, r[i].n = start, r[i].n+n
		return
	}
	l.ranges = append(r, wrRange{})
	copy(l.ranges[i+1:], l.ranges[i:])
	l.ranges[i] = wrRange{start, n}
}

func (l *wrFreeList) last() (wrRange, bool) {
	if len(l.ranges) == 0 {
		return wrRange{}, false
	}
	return l.ranges[len(l.ranges)-1], true
}

func (l *wrFreeList) removeLast() { l.ranges = l.ranges[:len(l.ranges)-1] }

// wrRefcountLayout says where Close put the refcount structures.
type wrRefcountLayout struct {
	tableOffset   int64
	tableClusters int64
	end           int64 // end of the last host cluster in use
}

// writeRefcounts writes the refcount table and blocks for every cluster
// below w.end plus the clusters they occupy themselves (qcow2.txt "Host
// cluster management"). Refcount block 0 lives in cluster 2, reserved at
// Create; the table lives in cluster 1 when one cluster can hold it, else it
// is appended. Further blocks are appended. Appending blocks needs more
// clusters, which may need more blocks and a larger table: iterate until the
// layout is stable. Every cluster below the end has refcount 1 except the
// free ones and those holding compressed streams, whose counts are kept
// (w.refcount), so the blocks are generated one at a time, never all in
// memory.
func (w *wrImage) writeRefcounts() (wrRefcountLayout, error) {
	cs := w.clusterSize
	perBlock := cs * 8 / wrRefcountBits // refcounts in one block
	base := w.end >> w.clusterBits      // clusters in use before refcount metadata

	var blocks, tableClusters, total int64
	total = base
	for {
		b := (total + perBlock - 1) / perBlock
		tc := w.bytesToClusters(b * 8)
		t := base + (b - 1) // block 0 is in cluster 2, already counted
		if tc > 1 {
			t += tc
		}
		if b == blocks && tc == tableClusters && t == total {
			break
		}
		blocks, tableClusters, total = b, tc, t
	}
	if tableClusters*cs > MaxRefcountTableSize {
		return wrRefcountLayout{}, fmt.Errorf("qcow2: %w: %d clusters need a refcount table of %d bytes, above %d",
			errRefcountTableTooLarge, total, tableClusters*cs, MaxRefcountTableSize)
	}

	layout := wrRefcountLayout{tableClusters: tableClusters, end: total * cs}
	next := base // next appended cluster
	if tableClusters == 1 {
		layout.tableOffset = 1 * cs
	} else {
		layout.tableOffset = next * cs
		next += tableClusters
	}
	free := w.free
	if tableClusters > 1 {
		free.ranges = append([]wrRange(nil), free.ranges...)
		free.add(1, 1) // cluster 1 stays unused
	}

	// The table: block k's offset.
	table := make([]byte, tableClusters*cs)
	blockOffset := func(k int64) int64 {
		if k == 0 {
			return 2 * cs
		}
		return (next + k - 1) * cs
	}
	for k := int64(0); k < blocks; k++ {
		binary.BigEndian.PutUint64(table[k*8:], uint64(blockOffset(k)))
	}
	if _, err := w.f.WriteAt(table, layout.tableOffset); err != nil {
		return layout, fmt.Errorf("qcow2: writing the refcount table: %w", err)
	}

	// The blocks, one at a time.
	block := make([]byte, cs)
	fr := 0 // index of the first free range not entirely before the block
	for k := int64(0); k < blocks; k++ {
		clear(block)
		first := k * perBlock
		lastEnd := min(first+perBlock, total)
		for c := first; c < lastEnd; c++ {
			binary.BigEndian.PutUint16(block[(c-first)*2:], 1)
		}
		for ; fr < len(free.ranges) && free.ranges[fr].start+free.ranges[fr].n <= first; fr++ {
		}
		for i := fr; i < len(free.ranges) && free.ranges[i].start < lastEnd; i++ {
			s := max(free.ranges[i].start, first)
			e := min(free.ranges[i].start+free.ranges[i].n, lastEnd)
			clear(block[(s-first)*2 : (e-first)*2])
		}
		// Clusters holding compressed streams count the streams.
		if rc := &w.refcount; rc.counts != nil {
			s := max(first, rc.first)
			e := min(lastEnd, rc.first+int64(len(rc.counts)))
			for c := s; c < e; c++ {
				if n := rc.counts[c-rc.first]; n > 0 {
					binary.BigEndian.PutUint16(block[(c-first)*2:], n)
				}
			}
		}
		if _, err := w.f.WriteAt(block, blockOffset(k)); err != nil {
			return layout, fmt.Errorf("qcow2: writing refcount block %d: %w", k, err)
		}
	}
	return layout, nil
}
