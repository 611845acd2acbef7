package qed

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// chkMaxClusters bounds the bitmap of referenced clusters (one bit per
// host cluster): 2^31 clusters is 256 MiB of bitmap, an 8 TiB file of 4 KiB
// clusters.
const chkMaxClusters = 1 << 31

// chkMaxProblems caps the findings listed in the report.
const chkMaxProblems = 100

// Check is a native `qemu-img check` of a QED image, counting as qemu does
// (block/qed-check.c): every cluster must be referenced once by the L1 or
// an L2 table (a second reference is a corruption, none a leak), every
// offset aligned, past the header and inside the file (rounded down to a
// cluster); allocated and fragmented clusters are counted per L2 table.
// Leaks are only counted when every table could be read. It repairs
// nothing and ignores the need-check bit, as qemu-img check without -r.
//
// The leaks are the true figure: qemu-img check reports one more for every
// cluster_size-1 clusters of the file, on images qemu wrote as on ours
// (block/qed.h qed_bytes_to_clusters divides by cluster_size-1, so that
// one index in cluster_size-1 of its bitmap is never marked).
//
// A header qemu would not open is an error, as is an I/O error.
func Check(r io.ReaderAt, fileSize int64) (disk.CheckReport, error) {
	_, h, err := inspect(blockio.Source{R: r, Size: fileSize}, disk.Limits{})
	if err != nil {
		return disk.CheckReport{}, fmt.Errorf("qed: check: %w", err)
	}
	g := h.geometry()
	c := &chkState{r: r, g: g, h: h, fileSize: fileSize &^ (g.clusterSize - 1)}
	nclusters := c.fileSize >> g.clusterBits
	if nclusters > chkMaxClusters {
		return disk.CheckReport{}, fmt.Errorf("qed: check: %w: a file of %d clusters is more than the check's limit of %d", disk.ErrLimit, nclusters, chkMaxClusters)
	}
	c.used = make([]uint64, (nclusters+63)/64)
	c.nclusters = nclusters
	c.rep.Format = "qed"
	c.rep.TotalClusters = int64((h.imageSize + uint64(g.clusterSize) - 1) / uint64(g.clusterSize))
	if err := c.run(); err != nil {
		return disk.CheckReport{}, err
	}
	if more := c.problems - chkMaxProblems; more > 0 {
		c.rep.Problems = append(c.rep.Problems, fmt.Sprintf("... and %d more", more))
	}
	return c.rep, nil
}

type chkState struct {
	r         io.ReaderAt
	g         geometry
	h         header
	fileSize  int64 // rounded down to a cluster
	nclusters int64
	used      []uint64 // bitmap of referenced clusters
	rep       disk.CheckReport
	problems  int
}

func (c *chkState) problem(count *int, format string, args ...any) {
	*count++
	c.problems++
	if c.problems <= chkMaxProblems {
		c.rep.Problems = append(c.rep.Problems, fmt.Sprintf(format, args...))
	}
}

// markUsed marks n clusters from host offset off as referenced (off is
// valid) and reports whether none was referenced before; what and where
// say what references them, for the report.
func (c *chkState) markUsed(off uint64, n int64, what string, where uint64) bool {
	first := int64(off >> c.g.clusterBits)
	ok := true
	for k := first; k < first+n; k++ {
		w, b := k/64, uint(k%64)
		if c.used[w]&(1<<b) != 0 {
			c.problem(&c.rep.Corruptions, "%s %#x: cluster at host offset %#x is referenced more than once", what, where, k<<c.g.clusterBits)
			ok = false
		}
		c.used[w] |= 1 << b
	}
	return ok
}

// chkChunk is how many bytes of a table are read at once.
const chkChunk = 64 << 10

// run walks the L1 table and every L2 table it references, in qemu's
// order (qed_check_l1_table), then counts the leaks.
func (c *chkState) run() error {
	g := c.g
	c.markUsed(c.h.l1Offset, int64(c.h.tableSize), "L1 table at", c.h.l1Offset)
	chunk := min(g.tableBytes, chkChunk)
	l1buf := make([]byte, chunk)
	l2buf := make([]byte, chunk)
	readErrors := false
	for at := int64(0); at < g.tableBytes; at += chunk {
		if err := c.read(l1buf, int64(c.h.l1Offset)+at); err != nil {
			return err
		}
		for k := int64(0); k < chunk; k += 8 {
			l2 := binary.LittleEndian.Uint64(l1buf[k:])
			if l2 == entryUnallocated {
				continue
			}
			l1i := (at + k) / 8
			if !g.tableOK(l2, c.fileSize) {
				c.problem(&c.rep.Corruptions, "L1 entry %d: L2 table offset %#x is not cluster aligned, overlaps the header or lies beyond the end of the file", l1i, l2)
				continue
			}
			if !c.markUsed(l2, int64(c.h.tableSize), "L2 table at", l2) {
				continue // a table that overlaps another is not followed
			}
			if err := c.checkL2(l2, l2buf); err != nil {
				c.problem(&c.rep.Errors, "reading the L2 table at %#x: %v", l2, err)
				readErrors = true
			}
		}
	}
	if readErrors {
		return nil
	}
	for k := int64(c.h.headerSize); k < c.nclusters; k++ {
		if c.used[k/64]&(1<<uint(k%64)) == 0 {
			// Count whole runs at once, not one problem per cluster.
			end := k + 1
			for end < c.nclusters && c.used[end/64]&(1<<uint(end%64)) == 0 {
				end++
			}
			c.rep.Leaks += int(end-k) - 1
			c.problem(&c.rep.Leaks, "%d clusters from host offset %#x are referenced by no table (leaked)", end-k, k<<g.clusterBits)
			k = end - 1
		}
	}
	return nil
}

// checkL2 checks the entries of the L2 table at host offset table
// (qed_check_l2_table).
func (c *chkState) checkL2(table uint64, buf []byte) error {
	g := c.g
	var last uint64
	for at := int64(0); at < g.tableBytes; at += int64(len(buf)) {
		if err := blockio.ReadFull(c.r, buf, int64(table)+at); err != nil {
			return err
		}
		for k := 0; k < len(buf); k += 8 {
			e := binary.LittleEndian.Uint64(buf[k:])
			if e == entryUnallocated || e == entryZero {
				continue
			}
			c.rep.AllocatedClusters++
			if last != 0 && last+uint64(g.clusterSize) != e {
				c.rep.FragmentedClusters++
			}
			last = e
			if !g.clusterOK(e, c.fileSize) {
				c.problem(&c.rep.Corruptions, "L2 table at %#x, entry %d: data cluster offset %#x is not cluster aligned, overlaps the header or lies beyond the end of the file",
					table, (at+int64(k))/8, e)
				continue
			}
			c.markUsed(e, 1, "data cluster of the L2 table at", table)
		}
	}
	return nil
}

func (c *chkState) read(buf []byte, off int64) error {
	if err := blockio.ReadFull(c.r, buf, off); err != nil {
		return fmt.Errorf("qed: check: reading %d bytes at %#x: %w", len(buf), off, err)
	}
	return nil
}
