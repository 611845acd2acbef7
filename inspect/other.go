package inspect

import (
	"encoding/binary"
	"fmt"

	"github.com/ucphhpc/gen-vm-image-go/disk"
)

// The formats below are recognised but not read by this version, so an
// image of theirs is refused after inspection anyway. Their checks still
// run first so that the refusal names the real danger (a backing file, a
// parent, encryption, an absurd size) rather than "not readable yet", and
// so that a future reader inherits them.

// checkLUKS refuses LUKS containers: encrypted.
func checkLUKS(src *source, _ Policy, _ *Report) error {
	version := uint16(0)
	if b, err := src.read("LUKS header", 0, 8); err == nil {
		version = binary.BigEndian.Uint16(b[6:])
	}
	return refuse(disk.ErrUnsupported, "a LUKS (version %d) encrypted container: encrypted images cannot be read; decrypt it first and pass the result", version)
}

// checkQCOW1: qemu's block/qcow.c header, big-endian.
func checkQCOW1(src *source, p Policy, rep *Report) error {
	b, err := src.read("qcow header", 0, 48)
	if err != nil {
		return err
	}
	be := binary.BigEndian
	backingOffset, backingSize := be.Uint64(b[8:]), be.Uint32(b[16:])
	size := be.Uint64(b[24:])
	clusterBits, l2Bits := b[32], b[33]
	crypt := be.Uint32(b[36:])
	if backingOffset != 0 {
		name := fmt.Sprintf("(%d bytes at offset %#x)", backingSize, backingOffset)
		if backingSize <= 1023 && backingOffset < uint64(src.size) && uint64(backingSize) <= uint64(src.size)-backingOffset {
			if nb, err := src.read("qcow backing file name", int64(backingOffset), int64(backingSize)); err == nil {
				name = quote(string(nb))
			}
		}
		return refuse(disk.ErrUnsafe, "the image is an overlay on the backing file %s: an image must not make us open other files", name)
	}
	if crypt != 0 {
		return refuse(disk.ErrUnsupported, "the image is encrypted (method %d); encrypted images cannot be read", crypt)
	}
	if err := checkSize("the qcow header", size, p); err != nil {
		return err
	}
	// qemu's bounds (block/qcow.c qcow_open).
	if clusterBits < 9 || clusterBits > 16 || l2Bits < 9-3 || l2Bits > 16-3 {
		return refuse(disk.ErrFormat, "cluster_bits %d and l2_bits %d out of range", clusterBits, l2Bits)
	}
	perL1 := uint64(1) << (clusterBits + l2Bits)
	if err := checkTable("the L1 table", (size+perL1-1)/perL1, 8); err != nil {
		return err
	}
	rep.VirtualSize = int64(size)
	return nil
}

// checkQED: qemu's docs/interop/qed_spec.txt, little-endian.
func checkQED(src *source, p Policy, rep *Report) error {
	b, err := src.read("QED header", 0, 64)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	clusterSize, tableSize := le.Uint32(b[4:]), le.Uint32(b[8:])
	features := le.Uint64(b[16:])
	size := le.Uint64(b[48:])
	nameOffset, nameSize := le.Uint32(b[56:]), le.Uint32(b[60:])
	const (
		featBacking     = 1 << 0
		featNeedCheck   = 1 << 1
		featBackingNoFm = 1 << 2
		featKnown       = featBacking | featNeedCheck | featBackingNoFm
	)
	if unknown := features &^ featKnown; unknown != 0 {
		return refuse(disk.ErrUnsupported, "unknown feature bits %#x are set", unknown)
	}
	if features&featBacking != 0 {
		name := fmt.Sprintf("(%d bytes at offset %#x)", nameSize, nameOffset)
		if nameSize <= 1023 && uint64(nameOffset)+uint64(nameSize) <= uint64(src.size) {
			if nb, err := src.read("QED backing file name", int64(nameOffset), int64(nameSize)); err == nil {
				name = quote(string(nb))
			}
		}
		return refuse(disk.ErrUnsafe, "the image is an overlay on the backing file %s: an image must not make us open other files", name)
	}
	if err := checkSize("the QED header", size, p); err != nil {
		return err
	}
	// qed_spec.txt: cluster size a power of two from 4 KiB to 64 MiB, table
	// size 1 to 16 clusters.
	if clusterSize < 4<<10 || clusterSize > 64<<20 || clusterSize&(clusterSize-1) != 0 || tableSize < 1 || tableSize > 16 || tableSize&(tableSize-1) != 0 {
		return refuse(disk.ErrFormat, "cluster size %d and table size %d out of range", clusterSize, tableSize)
	}
	rep.VirtualSize = int64(size)
	return nil
}

// checkVDI: VirtualBox's header as qemu's block/vdi.c reads it, little-endian.
func checkVDI(src *source, p Policy, rep *Report) error {
	b, err := src.read("VDI header", 0, 0x1c8)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	imageType := le.Uint32(b[0x4c:])
	size := le.Uint64(b[0x170:])
	blockSize := le.Uint32(b[0x178:])
	blocks := le.Uint32(b[0x180:])
	switch imageType {
	case 1, 2: // dynamic, static
	case 3, 4:
		return refuse(disk.ErrUnsafe, "an undo or differencing image (type %d) over a parent: it needs its parent, and an image must not make us open other files", imageType)
	default:
		return refuse(disk.ErrUnsupported, "image type %d (1 dynamic and 2 static are readable)", imageType)
	}
	if err := checkSize("the VDI header", size, p); err != nil {
		return err
	}
	if blockSize == 0 || blockSize&(blockSize-1) != 0 || blockSize > 256<<20 {
		return refuse(disk.ErrFormat, "block size %d", blockSize)
	}
	if err := checkTable("the block map", uint64(blocks), 4); err != nil {
		return err
	}
	if uint64(blocks)*uint64(blockSize) < size {
		return refuse(disk.ErrFormat, "%d blocks of %d bytes cover less than the virtual size of %d bytes", blocks, blockSize, size)
	}
	rep.VirtualSize = int64(size)
	return nil
}

// checkParallels: qemu's docs/interop/parallels.txt, little-endian.
func checkParallels(src *source, p Policy, rep *Report) error {
	b, err := src.read("Parallels header", 0, 64)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	clusterSectors := le.Uint32(b[28:])
	batEntries := le.Uint32(b[32:])
	sectors := le.Uint64(b[36:])
	if string(b[:16]) == "WithoutFreeSpace" {
		sectors &= 0xffffffff // version 1 has a 32-bit count (qemu parallels_open)
	}
	if err := checkSectors("the Parallels header", sectors, p); err != nil {
		return err
	}
	if clusterSectors == 0 || clusterSectors > 1<<21 {
		return refuse(disk.ErrFormat, "cluster of %d sectors", clusterSectors)
	}
	// CVE-2014-0143: the catalog (BAT) size was trusted by qemu.
	if err := checkTable("the catalog", uint64(batEntries), 4); err != nil {
		return err
	}
	rep.VirtualSize = int64(sectors * 512)
	return nil
}
