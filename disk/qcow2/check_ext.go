package qcow2

import (
	"encoding/binary"
)

// Bitmap limits and layout (qcow2.txt "Bitmaps extension", "Bitmap
// directory", "Bitmap table"; qemu's block/qcow2-bitmap.c).
const (
	chkMaxBitmaps             = 65535
	chkMaxBitmapDirectorySize = 1024 * chkMaxBitmaps
	chkBitmapDirEntrySize     = 24
	chkMaxBitmapTableSize     = 0x8000000
	chkMaxBitmapNameSize      = 1023
	chkBitmapReservedFlags    = uint32(0xfffffffc)
	chkBitmapTypeDirty        = 1
	chkBitmapMinGranularity   = 9
	chkBitmapMaxGranularity   = 31
	chkBitmapEntryReserved    = uint64(0xff000000000001fe)
	chkBitmapEntryOffsetMask  = uint64(0x00fffffffffffe00)
	chkBitmapEntryAllOnes     = uint64(1)
)

// countExtensions counts the clusters that header extensions point at: the
// LUKS header and the bitmaps.
func (c *chkState) countExtensions() error {
	if p := c.h.Extension(extFullDiskEncryption); len(p) >= 16 {
		off, n := binary.BigEndian.Uint64(p), binary.BigEndian.Uint64(p[8:])
		c.inc(off, n, "encryption header")
	}
	return c.countBitmaps()
}

// countBitmaps counts the bitmap directory, the bitmap tables and the
// bitmap data clusters (qemu's qcow2_check_bitmaps_refcounts). Like qemu,
// it ignores the extension unless autoclear bit 0 says the bitmaps are
// still valid (a program that does not know bitmaps clears the bit; their
// clusters are then leaks).
func (c *chkState) countBitmaps() error {
	if c.h.AutoclearFeatures&AutoclearBitmaps == 0 {
		return nil
	}
	p := c.h.Extension(extBitmaps)
	if p == nil {
		return nil
	}
	be := binary.BigEndian
	if len(p) < 24 {
		c.corruption("bitmaps extension of %d bytes is too short", len(p))
		return nil
	}
	count := be.Uint32(p[0:])
	dirSize := be.Uint64(p[8:])
	dirOffset := be.Uint64(p[16:])
	switch {
	case count == 0 || count > chkMaxBitmaps:
		c.corruption("bitmaps extension: %d bitmaps (must be 1..%d)", count, chkMaxBitmaps)
		return nil
	case dirSize > chkMaxBitmapDirectorySize:
		c.corruption("bitmaps extension: directory of %d bytes is too large", dirSize)
		return nil
	case dirOffset%uint64(c.clusterSize) != 0:
		c.corruption("bitmaps extension: directory offset %#x is not cluster aligned", dirOffset)
		return nil
	}
	c.inc(dirOffset, dirSize, "bitmap directory")
	dir := make([]byte, dirSize)
	if err := c.readAt(dir, dirOffset); err != nil {
		return err
	}
	type table struct {
		offset uint64
		size   uint32
	}
	var tables []table
	var seen uint32
	pos := uint64(0)
	for pos < dirSize {
		if pos+chkBitmapDirEntrySize > dirSize {
			c.corruption("broken bitmap directory at %#x", dirOffset)
			return nil
		}
		e := dir[pos:]
		t := table{offset: be.Uint64(e[0:]), size: be.Uint32(e[8:])}
		flags := be.Uint32(e[12:])
		typ, gran := e[16], e[17]
		nameSize := uint64(be.Uint16(e[18:]))
		extraSize := uint64(be.Uint32(e[20:]))
		next := pos + (chkBitmapDirEntrySize+extraSize+nameSize+7)&^7
		if seen++; seen > count {
			c.corruption("bitmap directory holds more bitmaps than the extension's %d", count)
			return nil
		}
		if next > dirSize {
			c.corruption("broken bitmap directory at %#x", dirOffset)
			return nil
		}
		if extraSize != 0 || t.size == 0 || t.offset == 0 || t.offset%uint64(c.clusterSize) != 0 ||
			t.size > chkMaxBitmapTableSize || gran < chkBitmapMinGranularity || gran > chkBitmapMaxGranularity ||
			flags&chkBitmapReservedFlags != 0 || nameSize > chkMaxBitmapNameSize || typ != chkBitmapTypeDirty {
			c.corruption("bitmap directory entry %d is invalid", seen-1)
			return nil
		}
		tables = append(tables, t)
		pos = next
	}
	if seen != count {
		c.corruption("bitmap directory holds %d bitmaps, the extension says %d", seen, count)
		return nil
	}
	chunk := make([]byte, 64<<10)
	for _, t := range tables {
		c.inc(t.offset, uint64(t.size)*8, "bitmap table")
		// Stream the table: it may be large, and past the end of file it
		// reads as zeros (unallocated) anyway.
		for done := uint64(0); done < uint64(t.size)*8 && t.offset+done < uint64(c.fileSize); {
			n := min(uint64(len(chunk)), uint64(t.size)*8-done)
			if err := c.readAt(chunk[:n], t.offset+done); err != nil {
				return err
			}
			if err := c.spend(int64(n / 8)); err != nil {
				return err
			}
			for i := uint64(0); i < n; i += 8 {
				e := be.Uint64(chunk[i:])
				off := e & chkBitmapEntryOffsetMask
				if e&chkBitmapEntryReserved != 0 || (off != 0 && (e&chkBitmapEntryAllOnes != 0 || off%uint64(c.clusterSize) != 0)) {
					c.corruption("bitmap table at %#x: invalid entry %#x", t.offset, e)
					continue
				}
				if off != 0 {
					c.inc(off, uint64(c.clusterSize), "bitmap data")
				}
			}
			done += n
		}
	}
	return nil
}
