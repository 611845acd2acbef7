package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// Check is a native `qemu-img check` for any qcow2 image (versions 2 and 3,
// compressed clusters, extended L2 entries, internal snapshots, bitmaps,
// refcount widths of 1 to 64 bits). It recomputes the refcount of every host
// cluster from everything that references it and compares the result with
// the refcounts stored in the image: a stored refcount below the number of
// references is a corruption, one above it a leak. It also checks the COPIED
// flags of the active tables, and computes the statistics qemu-img check
// --output=json prints, counting them as qemu does.
//
// A header that cannot be parsed is an error; so is an I/O error. Anything
// wrong beyond the header is a finding in the report.
func Check(r io.ReaderAt, fileSize int64) (disk.CheckReport, error) {
	head, err := readHeaderCluster(r, fileSize)
	if err != nil {
		return disk.CheckReport{}, err
	}
	// Tables that start past the end of file are findings, not a reason to
	// refuse: qemu reads zeros there and reports the references as
	// corruptions. A file size of 0 turns off the parser's end-of-file test.
	h, err := ParseHeader(head, 0)
	if err != nil {
		return disk.CheckReport{}, err
	}
	if unknown := h.IncompatibleFeatures &^ IncompatKnown; unknown != 0 {
		return disk.CheckReport{}, unsupportedErr("unknown incompatible feature bits %#x", unknown)
	}
	c, err := newChkState(r, fileSize, h)
	if err != nil {
		return disk.CheckReport{}, err
	}
	if err := c.run(); err != nil {
		if !errors.Is(err, chkErrBudget) {
			return disk.CheckReport{}, err
		}
		// Report what was found, and that the check could not finish.
		c.checkError("check abandoned after examining %d table entries: the image's tables reference each other far more often than a genuine image's do", c.work)
	}
	return c.report(), nil
}

// chkMaxClusters bounds the in-memory table of expected refcounts (two
// bytes per host cluster): 2^28 clusters is a 16 TiB file with 64 KiB
// clusters, and 512 MiB of memory.
const chkMaxClusters = 1 << 28

// chkMaxProblems caps the findings listed in the report.
const chkMaxProblems = 100

// qemu's limits (block/qcow2.h).
const (
	chkMaxSnapshotExtraData = 1024
	chkMaxSnapshotsSize     = 64 << 20
	chkL1ReservedMask       = L1ReservedMask
	chkReftableReserved     = uint64(0x1ff)
	chkL2BitmapAllAlloc     = uint64(0xffffffff)
)

// chkState is one run of the checker.
type chkState struct {
	r           io.ReaderAt
	fileSize    int64
	h           *Header
	clusterBits uint32
	clusterSize int64
	dataFile    bool
	extendedL2  bool

	// refs[k] is the number of references to host cluster k found so far;
	// nbClusters is how many clusters the comparison covers: the file's,
	// plus one when something references the semi-allocated cluster just
	// past the end of file (qemu tolerates less than one cluster beyond).
	refs        []uint16
	nbClusters  int64
	refcountMax uint64

	reftable []uint64 // the stored refcount table
	blocks   chkBlockCache

	activeL1  []uint64
	snapshots []chkSnapshot
	snapSize  int64 // bytes of the snapshot table
	l2buf     []byte

	rep      disk.CheckReport
	problems int // findings, including those beyond the cap

	// work counts the table entries examined; a hostile image can point
	// every L1 entry (of millions) at the same L2 table, so the walk has a
	// budget, far above what any genuine image needs (see chkBudget).
	work, budget int64
}

// chkErrBudget ends a check whose tables are referenced too many times.
var chkErrBudget = errors.New("qcow2: check: too many table entries to examine")

// chkBudget is the number of table entries a check may examine. One pass
// over a genuine image's tables looks at most at every entry the file holds
// twice (the L1 table's part in the file, and each L2 table, which is a
// distinct cluster of the file) plus one partial table; the active tables
// are walked twice (references, then COPIED flags) and every snapshot's once.
// Only an image whose tables point at the same tables over and over again
// needs more.
func chkBudget(fileSize, clusterSize int64, snapshots uint32) int64 {
	perPass := 2*(fileSize/8) + clusterSize/8
	return 1<<20 + (3+int64(snapshots))*perPass
}

// spend accounts for n table entries examined.
func (c *chkState) spend(n int64) error {
	c.work += n
	if c.work > c.budget {
		return chkErrBudget
	}
	return nil
}

type chkSnapshot struct {
	l1Offset uint64
	l1Size   uint32
}

func newChkState(r io.ReaderAt, fileSize int64, h *Header) (*chkState, error) {
	cs := h.ClusterSize()
	nb := (fileSize + cs - 1) / cs
	if nb > chkMaxClusters {
		return nil, unsupportedErr("the file has %d clusters, more than the %d this check can hold in memory", nb, chkMaxClusters)
	}
	c := &chkState{
		r:           r,
		fileSize:    fileSize,
		h:           h,
		clusterBits: h.ClusterBits,
		clusterSize: cs,
		dataFile:    h.IncompatibleFeatures&IncompatDataFile != 0,
		extendedL2:  h.ExtendedL2(),
		refs:        make([]uint16, nb+1),
		nbClusters:  nb,
		refcountMax: min(uint64(1)<<(1<<h.RefcountOrder)-1, 0xffff),
		l2buf:       make([]byte, cs),
		budget:      chkBudget(fileSize, cs, h.NbSnapshots),
	}
	if h.RefcountOrder == 6 {
		c.refcountMax = 0xffff
	}
	c.blocks = chkBlockCache{c: c}
	c.rep.Format = "qcow2"
	return c, nil
}

// problem records a finding of one class: *count is incremented.
func (c *chkState) problem(count *int, format string, args ...any) {
	*count++
	c.problems++
	if c.problems <= chkMaxProblems {
		c.rep.Problems = append(c.rep.Problems, fmt.Sprintf(format, args...))
	}
}

func (c *chkState) corruption(format string, args ...any) {
	c.problem(&c.rep.Corruptions, format, args...)
}

func (c *chkState) checkError(format string, args ...any) {
	c.problem(&c.rep.Errors, format, args...)
}

func (c *chkState) report() disk.CheckReport {
	r := c.rep
	if more := c.problems - chkMaxProblems; more > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("... and %d more", more))
	}
	return r
}

// readAt fills buf from the file at off; what lies beyond the end of file
// reads as zeros, as qemu's block layer does. Only real I/O errors fail.
func (c *chkState) readAt(buf []byte, off uint64) error {
	if off >= uint64(c.fileSize) {
		clear(buf)
		return nil
	}
	if err := blockio.ReadPadded(c.r, c.fileSize, buf, int64(off)); err != nil {
		return fmt.Errorf("qcow2: check: reading %d bytes at %#x: %w", len(buf), off, err)
	}
	return nil
}

// run performs the check in qemu's order (block/qcow2-refcount.c
// qcow2_check_refcounts): snapshot table, references, refcount blocks,
// comparison, COPIED flags.
func (c *chkState) run() error {
	h := c.h
	cs := c.clusterSize
	c.rep.TotalClusters = int64((h.Size + uint64(cs) - 1) / uint64(cs))

	ok, err := c.readSnapshotTable()
	if err != nil || !ok {
		return err
	}
	if err := c.readRefcountTable(); err != nil {
		return err
	}

	c.inc(0, uint64(cs), "header") // header
	l1, err := c.checkL1(h.L1TableOffset, h.L1Size, true)
	if err != nil {
		return err
	}
	c.activeL1 = l1
	if c.dataFile && len(c.snapshots) > 0 {
		c.corruption("%d snapshots in an image with an external data file", len(c.snapshots))
	}
	for i, sn := range c.snapshots {
		if sn.l1Offset%uint64(cs) != 0 {
			c.corruption("snapshot %d: L1 table offset %#x is not cluster aligned", i, sn.l1Offset)
			continue
		}
		if int64(sn.l1Size) > MaxL1Bytes/8 {
			c.corruption("snapshot %d: L1 table of %d entries is too large", i, sn.l1Size)
			continue
		}
		if _, err := c.checkL1(sn.l1Offset, sn.l1Size, false); err != nil {
			return err
		}
	}
	c.inc(h.SnapshotsOffset, uint64(c.snapSize), "snapshot table")
	c.inc(h.RefcountTableOffset, uint64(len(c.reftable))*8, "refcount table")
	if err := c.countExtensions(); err != nil {
		return err
	}
	c.checkRefblocks()
	highest, err := c.compare()
	if err != nil {
		return err
	}
	if err := c.checkCopied(); err != nil {
		return err
	}
	c.rep.ImageEndOffset = (highest + 1) * cs
	return nil
}

// inc counts one reference to every host cluster overlapping
// [off, off+n) (qemu's qcow2_inc_refcounts_imrt). A range that reaches one
// cluster or more past the end of file is a corruption and is not counted.
func (c *chkState) inc(off, n uint64, what string) {
	if n == 0 {
		return
	}
	cs := uint64(c.clusterSize)
	if off > uint64(MaxVirtualSize) || n > uint64(MaxVirtualSize) || off+n >= uint64(c.fileSize)+cs {
		c.corruption("%s at %#x+%#x: reference to a region extending one cluster or more past the end of file (%d bytes)",
			what, off, n, c.fileSize)
		return
	}
	first := int64(off >> c.clusterBits)
	last := int64((off + n - 1) >> c.clusterBits)
	for k := first; k <= last; k++ {
		if k >= c.nbClusters {
			c.nbClusters = k + 1 // at most one past the file's clusters
		}
		if uint64(c.refs[k]) >= c.refcountMax {
			c.corruption("%s: refcount overflow in host cluster %d (offset %#x)", what, k, k<<c.clusterBits)
			continue
		}
		c.refs[k]++
	}
}

// readRefcountTable loads the stored refcount table (at most 8 MiB: the
// header parser enforces qemu's cap).
func (c *chkState) readRefcountTable() error {
	n := int64(c.h.RefcountTableClusters) * c.clusterSize / 8
	buf := make([]byte, n*8)
	if err := c.readAt(buf, c.h.RefcountTableOffset); err != nil {
		return err
	}
	c.reftable = make([]uint64, n)
	for i := range c.reftable {
		c.reftable[i] = binary.BigEndian.Uint64(buf[i*8:])
	}
	return nil
}

// checkRefblocks counts the refcount blocks themselves and checks that each
// is referenced exactly once (qemu's check_refblocks).
func (c *chkState) checkRefblocks() {
	cs := uint64(c.clusterSize)
	for i, e := range c.reftable {
		if e&chkReftableReserved != 0 {
			c.corruption("refcount table entry %d has reserved bits set (%#x)", i, e)
			continue
		}
		off := e &^ chkReftableReserved
		if off%cs != 0 {
			c.corruption("refcount block %d at %#x is not cluster aligned", i, off)
			continue
		}
		if off>>c.clusterBits >= uint64(c.nbClusters) {
			c.corruption("refcount block %d at %#x lies outside the image", i, off)
			continue
		}
		if off != 0 {
			c.inc(off, cs, "refcount block")
			if k := off >> c.clusterBits; c.refs[k] != 1 {
				c.corruption("refcount block %d at %#x is referenced %d times", i, off, c.refs[k])
			}
		}
	}
}

// compare compares every stored refcount with the references counted and
// returns the highest cluster that is in use by either account.
func (c *chkState) compare() (int64, error) {
	var highest int64
	for k := int64(0); k < c.nbClusters; k++ {
		stored, err := c.blocks.refcount(k)
		if err != nil {
			var bad chkBadBlock
			if errors.As(err, &bad) {
				c.checkError("cannot get the refcount of cluster %d: %v", k, err)
				continue
			}
			return 0, err
		}
		refs := uint64(c.refs[k])
		if stored > 0 || refs > 0 {
			highest = k
		}
		switch {
		case stored < refs:
			c.corruption("cluster %d (offset %#x): refcount=%d but %d references", k, k<<c.clusterBits, stored, refs)
		case stored > refs:
			c.problem(&c.rep.Leaks, "leaked cluster %d (offset %#x): refcount=%d, references=%d", k, k<<c.clusterBits, stored, refs)
		}
	}
	return highest, nil
}

// checkCopied checks the COPIED flag of the active L1 entries and of the
// standard L2 entries below them against the stored refcounts (qemu's
// check_oflag_copied): set exactly when the refcount is 1.
func (c *chkState) checkCopied() error {
	for i, e := range c.activeL1 {
		l2 := e & L1OffsetMask
		if l2 == 0 {
			continue
		}
		rc, err := c.blocks.refcount(int64(l2 >> c.clusterBits))
		if err != nil {
			if errors.As(err, new(chkBadBlock)) {
				continue
			}
			return err
		}
		if (rc == 1) != (e&EntryCopied != 0) {
			c.corruption("COPIED flag of L1 entry %d (L2 table at %#x) is wrong for refcount %d", i, l2, rc)
		}
		entries, err := c.readL2(l2)
		if err != nil {
			return err
		}
		es := c.h.L2EntrySize()
		for j := int64(0); j < entries; j++ {
			entry := binary.BigEndian.Uint64(c.l2buf[j*es:])
			typ := c.clusterType(entry)
			if typ != chkNormal && typ != chkZeroAlloc {
				continue
			}
			rc := uint64(1)
			if !c.dataFile {
				rc, err = c.blocks.refcount(int64((entry & L2OffsetMask) >> c.clusterBits))
				if err != nil {
					if errors.As(err, new(chkBadBlock)) {
						continue
					}
					return err
				}
			}
			if (rc == 1) != (entry&EntryCopied != 0) {
				c.corruption("COPIED flag of the L2 entry for virtual cluster %d (data at %#x) is wrong for refcount %d",
					int64(i)*(c.clusterSize/es)+j, entry&L2OffsetMask, rc)
			}
		}
	}
	return nil
}

// chkBadBlock is a refcount block the stored refcounts cannot be read from.
type chkBadBlock struct{ index, offset uint64 }

func (e chkBadBlock) Error() string {
	return fmt.Sprintf("refcount block %d at %#x is not cluster aligned", e.index, e.offset)
}

// chkBlockCache reads stored refcounts, keeping the last few refcount blocks.
type chkBlockCache struct {
	c       *chkState
	entries [8]struct {
		offset uint64
		buf    []byte
		used   uint64
	}
	clock uint64
}

// refcount returns the stored refcount of host cluster k (qemu's
// qcow2_get_refcount): 0 when the table or the block does not cover it.
func (b *chkBlockCache) refcount(k int64) (uint64, error) {
	c := b.c
	order := c.h.RefcountOrder
	blockBits := c.clusterBits + 3 - order // log2(refcounts per block)
	ti := uint64(k) >> blockBits
	if ti >= uint64(len(c.reftable)) {
		return 0, nil
	}
	off := c.reftable[ti] &^ chkReftableReserved
	if off == 0 {
		return 0, nil
	}
	if off%uint64(c.clusterSize) != 0 {
		return 0, chkBadBlock{ti, off}
	}
	buf, err := b.block(off)
	if err != nil {
		return 0, err
	}
	i := uint64(k) & (uint64(1)<<blockBits - 1)
	switch order {
	case 0, 1, 2:
		bits := uint64(1) << order
		perByte := 8 / bits
		return uint64(buf[i/perByte]>>((i%perByte)*bits)) & (1<<bits - 1), nil
	case 3:
		return uint64(buf[i]), nil
	case 4:
		return uint64(binary.BigEndian.Uint16(buf[i*2:])), nil
	case 5:
		return uint64(binary.BigEndian.Uint32(buf[i*4:])), nil
	default:
		return binary.BigEndian.Uint64(buf[i*8:]), nil
	}
}

func (b *chkBlockCache) block(off uint64) ([]byte, error) {
	b.clock++
	victim := 0
	for i := range b.entries {
		e := &b.entries[i]
		if e.buf != nil && e.offset == off {
			e.used = b.clock
			return e.buf, nil
		}
		if e.used < b.entries[victim].used {
			victim = i
		}
	}
	e := &b.entries[victim]
	if e.buf == nil {
		e.buf = make([]byte, b.c.clusterSize)
	}
	e.offset, e.used = off, b.clock
	if err := b.c.readAt(e.buf, off); err != nil {
		e.buf = nil
		return nil, err
	}
	return e.buf, nil
}
