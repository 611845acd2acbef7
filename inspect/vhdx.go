package inspect

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/bits"
	"unicode/utf16"

	"github.com/ucphhpc/gen-vm-image-go/disk"
)

// VHDX, [MS-VHDX] "Virtual Hard Disk v2 (VHDX) File Format", little-endian:
// two headers at 64 and 128 KiB (the valid one with the higher sequence
// number wins), two copies of the region table at 192 and 256 KiB, a
// metadata region that holds the disk's parameters.
const (
	vhdxHeader1      = 64 << 10
	vhdxHeader2      = 128 << 10
	vhdxHeaderSize   = 4 << 10
	vhdxRegion1      = 192 << 10
	vhdxRegion2      = 256 << 10
	vhdxRegionSize   = 64 << 10
	vhdxMaxEntries   = 2047 // region table and metadata table entries
	vhdxMetaTable    = 64 << 10
	vhdxMiB          = 1 << 20
	vhdxMinBlock     = 1 << 20
	vhdxMaxBlock     = 256 << 20
	vhdxMaxItemBytes = 64 << 10 // parent locator and other items we read
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// guid converts the textual form of a GUID to its on-disk bytes (the first
// three fields little-endian).
func guid(s string) [16]byte {
	var hex []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '-' {
			hex = append(hex, s[i])
		}
	}
	var raw [16]byte
	for i := range raw {
		var v byte
		for _, c := range hex[2*i : 2*i+2] {
			switch {
			case c >= '0' && c <= '9':
				v = v<<4 | (c - '0')
			default:
				v = v<<4 | (c | 0x20 - 'a' + 10)
			}
		}
		raw[i] = v
	}
	return [16]byte{raw[3], raw[2], raw[1], raw[0], raw[5], raw[4], raw[7], raw[6],
		raw[8], raw[9], raw[10], raw[11], raw[12], raw[13], raw[14], raw[15]}
}

var (
	vhdxRegionBAT      = guid("2DC27766-F623-4200-9D64-115E9BFD4A08")
	vhdxRegionMetadata = guid("8B7CA206-4790-4B9A-B8FE-575F050F886E")
	vhdxFileParameters = guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
	vhdxVirtualSize    = guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
	vhdxPage83         = guid("BECA12AB-B2E6-4523-93EF-C309E000C746")
	vhdxLogicalSector  = guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
	vhdxPhysicalSector = guid("CDA348C7-445D-4471-9CC9-E9885251C556")
	vhdxParentLocator  = guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
)

func checkVHDX(src *source, p Policy, rep *Report) error {
	hdr, err := vhdxCurrentHeader(src)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	if v := le.Uint16(hdr[66:]); v != 1 {
		return refuse(disk.ErrUnsupported, "header version %d (1 exists)", v)
	}
	if logGUID := hdr[48:64]; !allZero(logGUID) {
		return refuse(disk.ErrUnsupported, "the log holds changes that were never applied (log GUID %x): the image was not closed cleanly and must be replayed before it can be read; open it read-write once on a trusted host (Hyper-V, or qemu-img check -r all)", logGUID)
	}
	bat, meta, err := vhdxRegions(src)
	if err != nil {
		return err
	}
	md, err := vhdxMetadata(src, meta)
	if err != nil {
		return err
	}
	if md.parent != "" {
		return refuse(disk.ErrUnsafe, "a differencing disk over the parent %s: it needs its parent to be read, and an image must not make us open other files; merge it on a trusted host first", md.parent)
	}
	if err := checkSize("the VHDX metadata", md.virtualSize, p); err != nil {
		return err
	}
	// [MS-VHDX] 2.5 "BAT": a sector bitmap entry follows every chunkRatio
	// payload entries.
	chunkRatio := (uint64(1) << 23) * uint64(md.logicalSector) / uint64(md.blockSize)
	dataBlocks := (md.virtualSize + uint64(md.blockSize) - 1) / uint64(md.blockSize)
	entries := dataBlocks
	if dataBlocks > 0 {
		entries += (dataBlocks - 1) / chunkRatio
	}
	if uint64(bat.length) < entries*8 {
		return refuse(disk.ErrFormat, "the BAT region of %d bytes is too small for %d entries", bat.length, entries)
	}
	rep.VirtualSize = int64(md.virtualSize)
	rep.Notes = append(rep.Notes, fmt.Sprintf("VHDX, %d bytes virtual, %d-byte blocks, %d-byte logical sectors; no parent, no pending log",
		md.virtualSize, md.blockSize, md.logicalSector))
	return nil
}

// vhdxCurrentHeader returns the valid header with the higher sequence number.
func vhdxCurrentHeader(src *source) ([]byte, error) {
	le := binary.LittleEndian
	var best []byte
	var bestSeq uint64
	for _, off := range []int64{vhdxHeader1, vhdxHeader2} {
		h, err := src.read("VHDX header", off, vhdxHeaderSize)
		if err != nil {
			return nil, err
		}
		if string(h[:4]) != "head" || !crcValid(h, 4) {
			continue
		}
		if seq := le.Uint64(h[8:]); best == nil || seq > bestSeq {
			best, bestSeq = h, seq
		}
	}
	if best == nil {
		return nil, refuse(disk.ErrFormat, "neither header (at 64 KiB and 128 KiB) has a valid signature and checksum")
	}
	return best, nil
}

// crcValid checks a CRC-32C stored at at over b with that field as zero.
func crcValid(b []byte, at int) bool {
	want := binary.LittleEndian.Uint32(b[at:])
	c := crc32.Update(0, castagnoli, b[:at])
	c = crc32.Update(c, castagnoli, []byte{0, 0, 0, 0})
	c = crc32.Update(c, castagnoli, b[at+4:])
	return c == want
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

type vhdxRegion struct {
	offset int64
	length int64
}

// vhdxRegions reads the first valid region table and returns the BAT and
// metadata regions; an unknown region marked required is refused.
func vhdxRegions(src *source) (bat, meta vhdxRegion, err error) {
	le := binary.LittleEndian
	var table []byte
	for _, off := range []int64{vhdxRegion1, vhdxRegion2} {
		t, err := src.read("VHDX region table", off, vhdxRegionSize)
		if err != nil {
			return bat, meta, err
		}
		if string(t[:4]) == "regi" && crcValid(t, 4) {
			table = t
			break
		}
	}
	if table == nil {
		return bat, meta, refuse(disk.ErrFormat, "neither region table (at 192 KiB and 256 KiB) has a valid signature and checksum")
	}
	n := le.Uint32(table[8:])
	if n > vhdxMaxEntries {
		return bat, meta, refuse(ErrLimit, "the region table has %d entries (at most %d exist)", n, vhdxMaxEntries)
	}
	var haveBAT, haveMeta bool
	for i := range int(n) {
		e := table[16+32*i : 16+32*(i+1)]
		var id [16]byte
		copy(id[:], e)
		off, length, required := le.Uint64(e[16:]), uint64(le.Uint32(e[24:])), le.Uint32(e[28:])&1 != 0
		r := vhdxRegion{int64(off), int64(length)}
		if off%vhdxMiB != 0 || length%vhdxMiB != 0 || off < vhdxMiB || off > uint64(src.size) || length > uint64(src.size)-off {
			return bat, meta, refuse(disk.ErrFormat, "region %d at offset %#x (%d bytes) is not MiB-aligned inside the file (%d bytes)", i, off, length, src.size)
		}
		switch id {
		case vhdxRegionBAT:
			if haveBAT {
				return bat, meta, refuse(disk.ErrFormat, "two BAT regions")
			}
			bat, haveBAT = r, true
		case vhdxRegionMetadata:
			if haveMeta {
				return bat, meta, refuse(disk.ErrFormat, "two metadata regions")
			}
			meta, haveMeta = r, true
		default:
			if required {
				return bat, meta, refuse(disk.ErrUnsupported, "region %d has an unknown type %x and is marked required", i, id)
			}
		}
	}
	if !haveBAT || !haveMeta {
		return bat, meta, refuse(disk.ErrFormat, "the region table lacks the BAT or the metadata region")
	}
	if meta.length < vhdxMetaTable {
		return bat, meta, refuse(disk.ErrFormat, "the metadata region of %d bytes cannot hold its table", meta.length)
	}
	return bat, meta, nil
}

type vhdxMeta struct {
	blockSize     uint32
	virtualSize   uint64
	logicalSector uint32
	parent        string // non-empty for a differencing disk
}

// vhdxMetadata reads the metadata table and the items we need; unknown
// required items are refused, parents are reported.
func vhdxMetadata(src *source, region vhdxRegion) (vhdxMeta, error) {
	var md vhdxMeta
	le := binary.LittleEndian
	table, err := src.read("VHDX metadata table", region.offset, vhdxMetaTable)
	if err != nil {
		return md, err
	}
	if string(table[:8]) != "metadata" {
		return md, refuse(disk.ErrFormat, "no metadata table signature at offset %#x", region.offset)
	}
	n := le.Uint16(table[10:])
	if n > vhdxMaxEntries {
		return md, refuse(ErrLimit, "the metadata table has %d entries (at most %d exist)", n, vhdxMaxEntries)
	}
	item := func(what string, off, length uint32, want uint32) ([]byte, error) {
		if want != 0 && length != want {
			return nil, refuse(disk.ErrFormat, "metadata item %s is %d bytes, not %d", what, length, want)
		}
		if length > vhdxMaxItemBytes {
			return nil, refuse(ErrLimit, "metadata item %s of %d bytes exceeds %s", what, length, human(vhdxMaxItemBytes))
		}
		if off < vhdxMetaTable || uint64(off)+uint64(length) > uint64(region.length) {
			return nil, refuse(disk.ErrFormat, "metadata item %s at %#x (%d bytes) lies outside the metadata region", what, off, length)
		}
		return src.read("VHDX metadata item "+what, region.offset+int64(off), int64(length))
	}
	seen := map[[16]byte]bool{}
	var haveParams, haveSize, haveSector, hasParentFlag bool
	md.logicalSector = 512
	for i := range int(n) {
		e := table[32+32*i : 32+32*(i+1)]
		var id [16]byte
		copy(id[:], e)
		if seen[id] {
			return md, refuse(disk.ErrFormat, "metadata item %x appears twice", id)
		}
		seen[id] = true
		off, length, flags := le.Uint32(e[16:]), le.Uint32(e[20:]), le.Uint32(e[24:])
		required := flags&4 != 0
		switch id {
		case vhdxFileParameters:
			b, err := item("file parameters", off, length, 8)
			if err != nil {
				return md, err
			}
			md.blockSize = le.Uint32(b)
			hasParentFlag = le.Uint32(b[4:])&2 != 0
			haveParams = true
		case vhdxVirtualSize:
			b, err := item("virtual disk size", off, length, 8)
			if err != nil {
				return md, err
			}
			md.virtualSize = le.Uint64(b)
			haveSize = true
		case vhdxLogicalSector:
			b, err := item("logical sector size", off, length, 4)
			if err != nil {
				return md, err
			}
			md.logicalSector = le.Uint32(b)
			haveSector = true
		case vhdxParentLocator:
			b, err := item("parent locator", off, length, 0)
			if err != nil {
				return md, err
			}
			md.parent = vhdxParentPath(b)
		case vhdxPhysicalSector, vhdxPage83:
		default:
			if required {
				return md, refuse(disk.ErrUnsupported, "metadata item %x is unknown and marked required", id)
			}
		}
	}
	if hasParentFlag && md.parent == "" {
		md.parent = "(the file parameters say it has one; no locator)"
	}
	if !haveParams || !haveSize || !haveSector {
		return md, refuse(disk.ErrFormat, "the metadata lacks the file parameters, the virtual disk size or the logical sector size")
	}
	if md.blockSize < vhdxMinBlock || md.blockSize > vhdxMaxBlock || bits.OnesCount32(md.blockSize) != 1 {
		return md, refuse(disk.ErrFormat, "block size %d (a power of two from 1 MiB to 256 MiB is needed)", md.blockSize)
	}
	if md.logicalSector != 512 && md.logicalSector != 4096 {
		return md, refuse(disk.ErrFormat, "logical sector size %d (512 or 4096 exist)", md.logicalSector)
	}
	return md, nil
}

// vhdxParentPath finds a path in a parent locator ([MS-VHDX] 2.6.2.6) for
// messages: relative_path, absolute_win32_path or volume_path, else a
// placeholder. Anything malformed gives the placeholder: the disk is
// refused as differencing either way.
func vhdxParentPath(b []byte) string {
	const unknown = "(named in the parent locator)"
	le := binary.LittleEndian
	if len(b) < 20 {
		return unknown
	}
	n := int(le.Uint16(b[18:]))
	str := func(off uint32, length uint16) (string, bool) {
		if length%2 != 0 || uint64(off)+uint64(length) > uint64(len(b)) {
			return "", false
		}
		u := make([]uint16, length/2)
		for i := range u {
			u[i] = le.Uint16(b[int(off)+2*i:])
		}
		return string(utf16.Decode(u)), true
	}
	paths := map[string]string{}
	for i := 0; i < n && 20+12*(i+1) <= len(b); i++ {
		e := b[20+12*i:]
		key, ok1 := str(le.Uint32(e), le.Uint16(e[8:]))
		value, ok2 := str(le.Uint32(e[4:]), le.Uint16(e[10:]))
		if ok1 && ok2 {
			paths[key] = value
		}
	}
	for _, k := range []string{"relative_path", "absolute_win32_path", "volume_path"} {
		if v := paths[k]; v != "" {
			return quote(v)
		}
	}
	return unknown
}
