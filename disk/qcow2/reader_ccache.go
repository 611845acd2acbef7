package qcow2

import "sync"

// rdClusterCache keeps a few decompressed clusters, keyed by the host
// offset of their compressed data, for reads that cover part of a
// compressed cluster: a reader going through a compressed cluster in small
// pieces, or a converter whose chunks do not align with 2 MiB clusters,
// decompresses each cluster once instead of once per piece. Reads of whole
// clusters decompress straight into the caller's buffer and bypass it.
type rdClusterCache struct {
	mu      sync.Mutex
	max     int
	entries map[int64][]byte
	fifo    []int64 // keys in insertion order; the oldest is evicted
	next    int
}

func newRdClusterCache(clusterSize int64) *rdClusterCache {
	n := int(max(4, min(64, (8<<20)/clusterSize)))
	return &rdClusterCache{max: n, entries: make(map[int64][]byte, n)}
}

// get returns the cluster decompressed from the data at host, or nil. The
// slice is never modified after put, so it may be read without the lock.
func (c *rdClusterCache) get(host int64) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries[host]
}

func (c *rdClusterCache) put(host int64, cluster []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[host]; ok {
		return
	}
	if len(c.fifo) < c.max {
		c.fifo = append(c.fifo, host)
	} else {
		delete(c.entries, c.fifo[c.next])
		c.fifo[c.next] = host
		c.next = (c.next + 1) % c.max
	}
	c.entries[host] = cluster
}

func (c *rdClusterCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries = make(map[int64][]byte)
	c.fifo, c.next = nil, 0
}
