package qcow2

import (
	"encoding/binary"
)

// chkClusterType classifies an L2 entry as qemu's qcow2_get_cluster_type does.
type chkClusterType uint8

const (
	chkUnallocated chkClusterType = iota
	chkZeroPlain                  // zero flag, no host cluster
	chkZeroAlloc                  // zero flag with a preallocated host cluster
	chkNormal
	chkCompressed
)

// qcow2.txt "Standard Cluster Descriptor": bits 1-8 and 56-61 are reserved.
const chkL2StandardReserved = L2StandardReserved

func (c *chkState) clusterType(entry uint64) chkClusterType {
	switch {
	case entry&EntryCompressed != 0:
		return chkCompressed
	case entry&EntryZero != 0 && !c.extendedL2:
		if entry&L2OffsetMask != 0 {
			return chkZeroAlloc
		}
		return chkZeroPlain
	case entry&L2OffsetMask == 0:
		// With an external data file, offset 0 is a real cluster when
		// COPIED says so.
		if c.dataFile && entry&EntryCopied != 0 {
			return chkNormal
		}
		return chkUnallocated
	default:
		return chkNormal
	}
}

// checkL1 counts an L1 table, its L2 tables and every cluster they map
// (qemu's check_refcounts_l1). The active table also feeds the statistics.
// It returns the table's entries.
func (c *chkState) checkL1(offset uint64, size uint32, active bool) ([]uint64, error) {
	if size == 0 {
		return nil, nil
	}
	what := "snapshot L1 table"
	if active {
		what = "L1 table"
	}
	c.inc(offset, uint64(size)*8, what)
	// Entries past the end of file read as zeros: read only what exists.
	n := int64(size)
	if offset >= uint64(c.fileSize) {
		n = 0
	} else {
		n = min(n, (c.fileSize-int64(offset)+7)/8)
	}
	buf := make([]byte, n*8)
	if err := c.readAt(buf, offset); err != nil {
		return nil, err
	}
	if err := c.spend(n); err != nil {
		return nil, err
	}
	l1 := make([]uint64, n)
	for i := range l1 {
		l1[i] = binary.BigEndian.Uint64(buf[i*8:])
	}
	for i, e := range l1 {
		if e == 0 {
			continue
		}
		if e&chkL1ReservedMask != 0 {
			c.corruption("%s entry %d has reserved bits set (%#x)", what, i, e)
		}
		l2 := e & L1OffsetMask
		c.inc(l2, uint64(c.clusterSize), "L2 table")
		if l2%uint64(c.clusterSize) != 0 {
			c.corruption("L2 table at %#x (%s entry %d) is not cluster aligned", l2, what, i)
		}
		if err := c.checkL2(l2, active); err != nil {
			return nil, err
		}
	}
	return l1, nil
}

// checkL2 counts the clusters one L2 table maps (qemu's check_refcounts_l2).
func (c *chkState) checkL2(offset uint64, active bool) error {
	entries, err := c.readL2(offset)
	if err != nil {
		return err
	}
	cs := uint64(c.clusterSize)
	es := c.h.L2EntrySize()
	compressed := newCompressedDescriptor(c.clusterBits)
	var nextContiguous uint64
	for i := int64(0); i < entries; i++ {
		entry := binary.BigEndian.Uint64(c.l2buf[i*es:])
		var bitmap uint64
		if c.extendedL2 {
			bitmap = binary.BigEndian.Uint64(c.l2buf[i*es+8:])
		}
		typ := c.clusterType(entry)
		if typ != chkCompressed && entry&chkL2StandardReserved != 0 {
			c.corruption("L2 table at %#x, entry %d has reserved bits set (%#x)", offset, i, entry)
		}
		switch typ {
		case chkCompressed:
			if entry&EntryCopied != 0 {
				c.corruption("compressed cluster at L2 %#x entry %d has the COPIED flag set", offset, i)
				entry &^= EntryCopied
			}
			if c.dataFile {
				c.corruption("compressed cluster at L2 %#x entry %d in an image with an external data file", offset, i)
				continue
			}
			if bitmap != 0 {
				c.corruption("compressed cluster at L2 %#x entry %d has a subcluster bitmap", offset, i)
				continue
			}
			host, n := compressed.decode(entry)
			c.inc(host, n, "compressed cluster")
			if active {
				c.rep.AllocatedClusters++
				c.rep.CompressedClusters++
				c.rep.FragmentedClusters++ // as qemu counts them: always
			}
		case chkZeroAlloc, chkNormal:
			host := entry & L2OffsetMask
			if (bitmap>>32)&bitmap != 0 {
				c.corruption("cluster at %#x (L2 %#x entry %d) has a corrupted subcluster bitmap", host, offset, i)
			}
			if host%cs != 0 {
				c.corruption("cluster at %#x (L2 %#x entry %d) is not cluster aligned", host, offset, i)
			}
			if active {
				c.rep.AllocatedClusters++
				if nextContiguous != 0 && host != nextContiguous {
					c.rep.FragmentedClusters++
				}
				nextContiguous = host + cs
			}
			if !c.dataFile {
				c.inc(host, cs, "data cluster")
			}
		case chkUnallocated:
			if bitmap&chkL2BitmapAllAlloc != 0 {
				c.corruption("unallocated cluster (L2 %#x entry %d) has a subcluster allocation bitmap", offset, i)
			}
		}
	}
	return nil
}

// readL2 reads the L2 table at offset into c.l2buf and returns how many of
// its entries lie, at least in part, inside the file. The others read as
// zeros, which map nothing: there is no need to look at them.
func (c *chkState) readL2(offset uint64) (int64, error) {
	if offset >= uint64(c.fileSize) {
		return 0, nil
	}
	if err := c.readAt(c.l2buf, offset); err != nil {
		return 0, err
	}
	es := c.h.L2EntrySize()
	n := (min(c.clusterSize, c.fileSize-int64(offset)) + es - 1) / es
	return n, c.spend(n)
}

// readSnapshotTable reads the snapshot table as qemu does before checking
// (qcow2_check_read_snapshot_table): it reports false when the table cannot
// be read at all, which qemu counts as a check error that ends the check.
func (c *chkState) readSnapshotTable() (bool, error) {
	h := c.h
	if h.NbSnapshots == 0 {
		return true, nil
	}
	c.snapshots = make([]chkSnapshot, 0, min(h.NbSnapshots, 1024))
	extraSizes := make([]uint32, 0, min(h.NbSnapshots, 1024))
	for e, err := range snapshotEntries(c.r, c.fileSize, h) {
		if err != nil {
			return false, err
		}
		if e.extraSize > chkMaxSnapshotExtraData {
			c.checkError("snapshot table entry %d has too much extra data (%d bytes, at most %d)", e.index, e.extraSize, chkMaxSnapshotExtraData)
			return false, nil
		}
		end := e.offset + e.length
		if end-h.SnapshotsOffset > chkMaxSnapshotsSize {
			c.checkError("snapshot table is too big (more than %d bytes)", chkMaxSnapshotsSize)
			return false, nil
		}
		c.snapshots = append(c.snapshots, chkSnapshot{l1Offset: e.l1Offset, l1Size: e.l1Size})
		extraSizes = append(extraSizes, e.extraSize)
		c.snapSize = int64(end - h.SnapshotsOffset)
	}
	if h.Version >= 3 {
		for i, extra := range extraSizes {
			if extra < 16 {
				c.corruption("snapshot table entry %d is incomplete (%d bytes of extra data, version 3 needs 16)", i, extra)
			}
		}
	}
	return true, nil
}
