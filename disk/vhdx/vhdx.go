// Package vhdx reads, writes and checks Hyper-V's VHDX images ([MS-VHDX]
// "Virtual Hard Disk v2 (VHDX) File Format"): fixed and dynamic disks; a
// pending log is replayed in memory, never into the file; differencing
// disks are refused.
package vhdx

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math/bits"
	"unicode/utf16"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
	"github.com/ucphhpc/gen-vm-image-go/size"
)

// Sniff recognises the file type identifier "vhdxfile" at offset 0
// ([MS-VHDX] 2.2.1).
func Sniff(r io.ReaderAt, _ int64) bool {
	return bytes.Equal(blockio.Peek(r, 0, 8), []byte("vhdxfile"))
}

// refuse builds a refusal of one class; Inspect names the format.
func refuse(class error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{class}, args...)...)
}

// VHDX, [MS-VHDX] "Virtual Hard Disk v2 (VHDX) File Format", little-endian:
// two headers at 64 and 128 KiB (the valid one with the higher sequence
// number wins), two copies of the region table at 192 and 256 KiB, a
// metadata region that holds the disk's parameters.
const (
	header1         = 64 << 10
	header2         = 128 << 10
	headerSize      = 4 << 10
	regionTable1    = 192 << 10
	regionTable2    = 256 << 10
	regionTableSize = 64 << 10
	maxEntries      = 2047 // region table and metadata table entries
	metaTableSize   = 64 << 10
	mib             = 1 << 20
	minBlock        = 1 << 20
	maxBlock        = 256 << 20
	maxItemBytes    = 64 << 10 // parent locator and other items we read
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
	regionBAT          = guid("2DC27766-F623-4200-9D64-115E9BFD4A08")
	regionMetadata     = guid("8B7CA206-4790-4B9A-B8FE-575F050F886E")
	itemFileParameters = guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
	itemVirtualSize    = guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
	itemPage83         = guid("BECA12AB-B2E6-4523-93EF-C309E000C746")
	itemLogicalSector  = guid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F")
	itemPhysicalSector = guid("CDA348C7-445D-4471-9CC9-E9885251C556")
	itemParentLocator  = guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
)

// Inspect reads the headers, replays a pending log in memory, reads the
// region table and the metadata, and refuses unknown required regions and
// items, differencing disks and absurd sizes.
func Inspect(r io.ReaderAt, size int64, limits disk.Limits) (disk.Facts, error) {
	var facts disk.Facts
	l, err := load(blockio.Source{R: r, Size: size}, limits.WithDefaults(), &facts)
	if err != nil {
		return facts, fmt.Errorf("vhdx: %w", err)
	}
	log := "no pending log"
	if l.replayed > 0 {
		log = fmt.Sprintf("a pending log of %d entries, replayed in memory (the file is not changed)", l.replayed)
	}
	facts.Notes = append(facts.Notes, fmt.Sprintf("VHDX, %d bytes virtual, %d-byte blocks, %d-byte logical sectors; no parent, %s",
		l.md.virtualSize, l.md.blockSize, l.md.logicalSector, log))
	return facts, nil
}

// layout is what the headers, the log, the region table and the metadata
// of an image say, and the source to read it through: the file, or the
// file as the replayed log changes it.
type layout struct {
	src        blockio.Source
	header     []byte // the current header
	logOffset  int64
	logLength  int64
	replayed   int // log entries replayed in memory
	bat, meta  region
	md         metadata
	chunkRatio int64 // payload blocks per sector bitmap block
	dataBlocks int64 // payload blocks
	batEntries int64 // payload and sector bitmap entries
}

// load reads an image's layout. facts.Info is set as soon as the metadata
// is decoded; facts may be nil.
func load(src blockio.Source, limits disk.Limits, facts *disk.Facts) (*layout, error) {
	hdr, err := currentHeader(src)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	if v := le.Uint16(hdr[66:]); v != 1 {
		return nil, refuse(disk.ErrUnsupported, "header version %d (1 exists)", v)
	}
	l := &layout{src: src, header: hdr, logLength: int64(le.Uint32(hdr[68:])), logOffset: int64(le.Uint64(hdr[72:]))}
	if logGUID := hdr[48:64]; !blockio.IsZero(logGUID) && l.logLength != 0 {
		// [MS-VHDX] 2.3.3: the log must be replayed before anything else
		// is read, the region table included.
		patched, n, err := replayLog(src, hdr, limits)
		if err != nil {
			return nil, err
		}
		l.src, l.replayed = patched, n
		if n > 0 {
			if hdr, err = currentHeader(l.src); err != nil {
				return nil, err
			}
			l.header = hdr
		}
	}
	if l.bat, l.meta, err = readRegions(l.src); err != nil {
		return nil, err
	}
	if l.md, err = readMetadata(l.src, l.meta); err != nil {
		return nil, err
	}
	if facts != nil {
		facts.Info = disk.Info{Format: "vhdx", VirtualSize: int64(l.md.virtualSize), ClusterSize: int64(l.md.blockSize)}
	}
	if l.md.parent != "" {
		return nil, refuse(disk.ErrUnsafe, "a differencing disk over the parent %s: it needs its parent to be read, and an image must not make us open other files; merge it on a trusted host first", l.md.parent)
	}
	if err := limits.CheckVirtualSize("the VHDX metadata", l.md.virtualSize); err != nil {
		return nil, err
	}
	// [MS-VHDX] 2.5 "BAT": a sector bitmap entry follows every chunkRatio
	// payload entries.
	l.chunkRatio = int64((uint64(1) << 23) * uint64(l.md.logicalSector) / uint64(l.md.blockSize))
	l.dataBlocks = int64((l.md.virtualSize + uint64(l.md.blockSize) - 1) / uint64(l.md.blockSize))
	l.batEntries = l.dataBlocks
	if l.dataBlocks > 0 {
		l.batEntries += (l.dataBlocks - 1) / l.chunkRatio
	}
	if err := limits.CheckTable("the VHDX BAT", uint64(l.batEntries), 8); err != nil {
		return nil, err
	}
	if l.bat.length < l.batEntries*8 {
		return nil, refuse(disk.ErrFormat, "the BAT region of %d bytes is too small for %d entries", l.bat.length, l.batEntries)
	}
	return l, nil
}

// currentHeader returns the valid header with the higher sequence number.
func currentHeader(src blockio.Source) ([]byte, error) {
	le := binary.LittleEndian
	var best []byte
	var bestSeq uint64
	for _, off := range []int64{header1, header2} {
		h, err := src.Read("VHDX header", off, headerSize)
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

type region struct {
	offset int64
	length int64
}

// readRegions reads the first valid region table and returns the BAT and
// metadata regions; an unknown region marked required is refused.
func readRegions(src blockio.Source) (bat, meta region, err error) {
	le := binary.LittleEndian
	var table []byte
	for _, off := range []int64{regionTable1, regionTable2} {
		t, err := src.Read("VHDX region table", off, regionTableSize)
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
	if n > maxEntries {
		return bat, meta, refuse(disk.ErrLimit, "the region table has %d entries (at most %d exist)", n, maxEntries)
	}
	var haveBAT, haveMeta bool
	for i := range int(n) {
		e := table[16+32*i : 16+32*(i+1)]
		var id [16]byte
		copy(id[:], e)
		off, length, required := le.Uint64(e[16:]), uint64(le.Uint32(e[24:])), le.Uint32(e[28:])&1 != 0
		r := region{int64(off), int64(length)}
		if off%mib != 0 || length%mib != 0 || off < mib || off > uint64(src.Size) || length > uint64(src.Size)-off {
			return bat, meta, refuse(disk.ErrFormat, "region %d at offset %#x (%d bytes) is not MiB-aligned inside the file (%d bytes)", i, off, length, src.Size)
		}
		switch id {
		case regionBAT:
			if haveBAT {
				return bat, meta, refuse(disk.ErrFormat, "two BAT regions")
			}
			bat, haveBAT = r, true
		case regionMetadata:
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
	if meta.length < metaTableSize {
		return bat, meta, refuse(disk.ErrFormat, "the metadata region of %d bytes cannot hold its table", meta.length)
	}
	return bat, meta, nil
}

type metadata struct {
	blockSize      uint32
	virtualSize    uint64
	logicalSector  uint32
	physicalSector uint32
	parent         string // non-empty for a differencing disk
}

// readMetadata reads the metadata table and the items we need; unknown
// required items are refused, parents are reported.
func readMetadata(src blockio.Source, region region) (metadata, error) {
	var md metadata
	le := binary.LittleEndian
	table, err := src.Read("VHDX metadata table", region.offset, metaTableSize)
	if err != nil {
		return md, err
	}
	if string(table[:8]) != "metadata" {
		return md, refuse(disk.ErrFormat, "no metadata table signature at offset %#x", region.offset)
	}
	n := le.Uint16(table[10:])
	if n > maxEntries {
		return md, refuse(disk.ErrLimit, "the metadata table has %d entries (at most %d exist)", n, maxEntries)
	}
	item := func(what string, off, length uint32, want uint32) ([]byte, error) {
		if want != 0 && length != want {
			return nil, refuse(disk.ErrFormat, "metadata item %s is %d bytes, not %d", what, length, want)
		}
		if length > maxItemBytes {
			return nil, refuse(disk.ErrLimit, "metadata item %s of %d bytes exceeds %s", what, length, size.Format(maxItemBytes))
		}
		if off < metaTableSize || uint64(off)+uint64(length) > uint64(region.length) {
			return nil, refuse(disk.ErrFormat, "metadata item %s at %#x (%d bytes) lies outside the metadata region", what, off, length)
		}
		return src.Read("VHDX metadata item "+what, region.offset+int64(off), int64(length))
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
		case itemFileParameters:
			b, err := item("file parameters", off, length, 8)
			if err != nil {
				return md, err
			}
			md.blockSize = le.Uint32(b)
			hasParentFlag = le.Uint32(b[4:])&2 != 0
			haveParams = true
		case itemVirtualSize:
			b, err := item("virtual disk size", off, length, 8)
			if err != nil {
				return md, err
			}
			md.virtualSize = le.Uint64(b)
			haveSize = true
		case itemLogicalSector:
			b, err := item("logical sector size", off, length, 4)
			if err != nil {
				return md, err
			}
			md.logicalSector = le.Uint32(b)
			haveSector = true
		case itemParentLocator:
			b, err := item("parent locator", off, length, 0)
			if err != nil {
				return md, err
			}
			md.parent = parentPath(b)
		case itemPhysicalSector:
			b, err := item("physical sector size", off, length, 4)
			if err != nil {
				return md, err
			}
			md.physicalSector = le.Uint32(b)
		case itemPage83:
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
	if md.blockSize < minBlock || md.blockSize > maxBlock || bits.OnesCount32(md.blockSize) != 1 {
		return md, refuse(disk.ErrFormat, "block size %d (a power of two from 1 MiB to 256 MiB is needed)", md.blockSize)
	}
	if md.logicalSector != 512 && md.logicalSector != 4096 {
		return md, refuse(disk.ErrFormat, "logical sector size %d (512 or 4096 exist)", md.logicalSector)
	}
	if md.virtualSize%uint64(md.logicalSector) != 0 {
		return md, refuse(disk.ErrFormat, "virtual size %d is not a multiple of the logical sector size %d", md.virtualSize, md.logicalSector)
	}
	return md, nil
}

// parentPath finds a path in a parent locator ([MS-VHDX] 2.6.2.6) for
// messages: relative_path, absolute_win32_path or volume_path, else a
// placeholder. Anything malformed gives the placeholder: the disk is
// refused as differencing either way.
func parentPath(b []byte) string {
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
			return disk.Quote(v)
		}
	}
	return unknown
}
