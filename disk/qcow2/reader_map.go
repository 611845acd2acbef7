package qcow2

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// rdKind is what a run of the virtual disk is stored as.
type rdKind uint8

const (
	rdZero       rdKind = iota // unallocated, zero flag or zero subcluster: reads as zeros
	rdData                     // standard cluster: bytes stored as they are at host
	rdCompressed               // compressed cluster: host holds clen bytes of compressed data
)

// rdRun is a run of the virtual disk with one kind of storage.
type rdRun struct {
	kind rdKind
	n    int64 // virtual bytes in the run
	// rdData: host offset of the run's first byte; the run is contiguous at
	// host. rdCompressed: host offset of the compressed data, and the run
	// lies within one cluster.
	host int64
	clen int64 // rdCompressed: compressed length in bytes (may pass EOF)
}

// rdCursor walks the mapping of an image. It remembers the L2 table it
// used last, so that a walk through consecutive clusters looks each table
// up once. A cursor belongs to one goroutine.
type rdCursor struct {
	im      *rdImage
	l1Index int64  // the L1 entry table belongs to; -1 for none
	table   []byte // the L2 table of l1Index; nil when unallocated
	l2Host  int64  // host offset of table
}

func (im *rdImage) cursor() rdCursor { return rdCursor{im: im, l1Index: -1} }

// run describes the longest run that starts at the virtual offset off
// (0 <= off < end <= size), ends at or before end, and has one kind of
// storage; data runs are contiguous at host, compressed runs are one
// cluster at most.
func (c *rdCursor) run(off, end int64) (rdRun, error) {
	im := c.im
	l1Index := off >> (im.l2Bits + im.clusterBits)
	if err := c.load(l1Index); err != nil {
		return rdRun{}, err
	}
	limit := min(end, (l1Index+1)<<(im.l2Bits+im.clusterBits))
	if c.table == nil {
		return rdRun{kind: rdZero, n: limit - off}, nil
	}
	r, err := c.at(off)
	if err != nil {
		return rdRun{}, err
	}
	pos := off + r.n
	if r.kind != rdCompressed {
		for pos < limit {
			next, err := c.at(pos)
			if err != nil {
				break // reported when the caller gets there
			}
			if next.kind != r.kind || (r.kind == rdData && next.host != r.host+(pos-off)) {
				break
			}
			pos += next.n
		}
	}
	r.n = min(pos, limit) - off
	return r, nil
}

// load makes the L2 table of L1 entry l1Index current, checking the entry
// and the table's place in the file first.
func (c *rdCursor) load(l1Index int64) error {
	if l1Index == c.l1Index {
		return nil
	}
	im := c.im
	c.l1Index, c.table, c.l2Host = -1, nil, 0
	virt := l1Index << (im.l2Bits + im.clusterBits)
	if l1Index >= int64(len(im.l1)) {
		// Cannot happen: the L1 table covers the virtual size.
		return formatErr("virtual offset %#x is not covered by the L1 table (%d entries)", virt, len(im.l1))
	}
	e := im.l1[l1Index]
	if e&L1ReservedMask != 0 {
		return formatErr("L1 entry %d (virtual offset %#x) at host offset %#x has reserved bits %#x set",
			l1Index, virt, int64(im.hdr.L1TableOffset)+l1Index*8, e&L1ReservedMask)
	}
	l2Host := int64(e & L1OffsetMask)
	if l2Host == 0 {
		c.l1Index = l1Index
		return nil
	}
	if l2Host&(im.clusterSize-1) != 0 {
		return formatErr("L2 table for virtual offset %#x at host offset %#x is not cluster aligned", virt, l2Host)
	}
	if l2Host > im.fileSize-im.clusterSize {
		return formatErr("L2 table for virtual offset %#x at host offset %#x lies beyond the end of the file (%d bytes)",
			virt, l2Host, im.fileSize)
	}
	table, err := im.l2.Get(l2Host, im.clusterSize, func(buf []byte) error {
		if err := blockio.ReadFull(im.r, buf, l2Host); err != nil {
			return fmt.Errorf("qcow2: reading the L2 table at host offset %#x: %w", l2Host, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.l1Index, c.table, c.l2Host = l1Index, table, l2Host
	return nil
}

// at classifies the storage at the virtual offset pos, which lies in the
// current (allocated) L2 table, and returns the run from pos to the end of
// its cluster, or of its stretch of like subclusters with extended L2.
func (c *rdCursor) at(pos int64) (rdRun, error) {
	im := c.im
	vcluster := pos >> im.clusterBits
	index := vcluster & (im.l2Entries - 1)
	clusterStart := vcluster << im.clusterBits
	inCluster := pos - clusterStart
	toEnd := im.clusterSize - inCluster
	var entry, bitmap uint64
	if im.extendedL2 {
		entry = binary.BigEndian.Uint64(c.table[index*16:])
		bitmap = binary.BigEndian.Uint64(c.table[index*16+8:])
	} else {
		entry = binary.BigEndian.Uint64(c.table[index*8:])
	}

	// qcow2.txt "Compressed Clusters Descriptor". With extended L2 the
	// bitmap of a compressed cluster is unused.
	if entry&EntryCompressed != 0 {
		host, clen := im.compressed.decode(entry)
		if host >= 1<<56 || int64(host) >= im.fileSize {
			return rdRun{}, c.entryErr(index, clusterStart, "compressed data at host offset %#x lies beyond the end of the file (%d bytes)", host, im.fileSize)
		}
		return rdRun{kind: rdCompressed, n: toEnd, host: int64(host), clen: int64(clen)}, nil
	}

	// qcow2.txt "Standard Cluster Descriptor".
	if r := entry & L2StandardReserved; r != 0 {
		return rdRun{}, c.entryErr(index, clusterStart, "reserved bits %#x are set", r)
	}
	host := int64(entry & L2OffsetMask)
	if host&(im.clusterSize-1) != 0 {
		return rdRun{}, c.entryErr(index, clusterStart, "host offset %#x is not cluster aligned", host)
	}
	if !im.extendedL2 {
		// Bit 0 set: a zero cluster, preallocated when host != 0 (the
		// preallocation is never read).
		if entry&EntryZero != 0 || host == 0 {
			return rdRun{kind: rdZero, n: toEnd}, nil
		}
		if host >= im.fileSize {
			return rdRun{}, c.entryErr(index, clusterStart, "data cluster at host offset %#x lies beyond the end of the file (%d bytes)", host, im.fileSize)
		}
		return rdRun{kind: rdData, n: toEnd, host: host + inCluster}, nil
	}

	// qcow2.txt "Extended L2 Entries": bit 0 of the descriptor is unused;
	// bitmap bits 0-31 say which subclusters are allocated, bits 32-63
	// which read as zeros. Without a backing file, unallocated and zero
	// subclusters both read as zeros.
	alloc, zero := uint32(bitmap), uint32(bitmap>>32)
	if alloc&zero != 0 {
		return rdRun{}, c.entryErr(index, clusterStart, "subclusters %#x are marked both allocated and zero", alloc&zero)
	}
	if alloc != 0 && host == 0 {
		return rdRun{}, c.entryErr(index, clusterStart, "subclusters %#x are allocated but the cluster has no host offset", alloc)
	}
	if alloc != 0 && host >= im.fileSize {
		return rdRun{}, c.entryErr(index, clusterStart, "data cluster at host offset %#x lies beyond the end of the file (%d bytes)", host, im.fileSize)
	}
	sub := uint(inCluster >> im.subclusterBits)
	rest := alloc >> sub
	allocated := rest&1 != 0
	var count int
	if allocated {
		count = bits.TrailingZeros32(^rest)
	} else {
		count = bits.TrailingZeros32(rest)
	}
	count = min(count, 32-int(sub))
	n := (int64(sub)+int64(count))<<im.subclusterBits - inCluster
	if !allocated {
		return rdRun{kind: rdZero, n: n}, nil
	}
	return rdRun{kind: rdData, n: n, host: host + inCluster}, nil
}

func (c *rdCursor) entryErr(index, virt int64, format string, args ...any) error {
	where := fmt.Sprintf("L2 entry %d (virtual offset %#x) of the table at host offset %#x: ", index, virt, c.l2Host)
	return formatErr(where+format, args...)
}

// Extents describes [off, off+n) as Data and Zero runs, coalesced, from the
// L1 and L2 tables alone. Compressed clusters are Data runs with Compressed
// set. The cost grows with the number of clusters in allocated L2 tables
// that the range covers, so callers walk a large disk in chunks.
func (im *rdImage) Extents(off, n int64) ([]disk.Extent, error) {
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("qcow2: extents of [%d, +%d): negative offset or length", off, n)
	}
	if off >= im.size || n == 0 {
		return nil, nil
	}
	end := off + min(n, im.size-off)
	c := im.cursor()
	var out []disk.Extent
	for pos := off; pos < end; {
		r, err := c.run(pos, end)
		if err != nil {
			return nil, err
		}
		zero, compressed := r.kind == rdZero, r.kind == rdCompressed
		if k := len(out) - 1; k >= 0 && out[k].Zero == zero && out[k].Compressed == compressed {
			out[k].Length += r.n
		} else {
			out = append(out, disk.Extent{Offset: pos, Length: r.n, Zero: zero, Compressed: compressed})
		}
		pos += r.n
	}
	return out, nil
}
