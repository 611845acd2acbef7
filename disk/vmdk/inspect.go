// Package vmdk knows VMware's virtual disk format ("Virtual Disk Format
// 5.0", and "Virtual Disk Format 1.1" for stream-optimized extents): it
// recognises the three kinds of VMDK file and inspects them, reads and
// checks hosted sparse extents (monolithicSparse and streamOptimized) and
// writes them. Descriptor files and extents in other files are refused.
package vmdk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
	"github.com/ucphhpc/gen-vm-image-go/size"
)

// Sniff recognises a hosted sparse extent ("KDMV"), an ESX COW disk
// ("COWD"), or a text descriptor (which names other files: the hostile
// case).
func Sniff(r io.ReaderAt, _ int64) bool {
	head := blockio.Peek(r, 0, sectorSize)
	if bytes.HasPrefix(head, []byte("KDMV")) || bytes.HasPrefix(head, []byte("COWD")) {
		return true
	}
	return bytes.Contains(head, []byte("# Disk DescriptorFile"))
}

// refuse builds a refusal of one class; Inspect names the format.
func refuse(class error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{class}, args...)...)
}

// VMDK hosted sparse extent header (VMware "Virtual Disk Format 5.0",
// "Hosted Sparse Extent Header"), little-endian, 512 bytes.
const (
	sectorSize   = 512
	gdAtEnd      = ^uint64(0) // gdOffset of a stream-optimized image with a footer
	flagNLTest   = 1 << 0     // the four newline characters are valid
	markerFooter = 3
	markerEOS    = 0
	// maxGrain is qemu's bound on the grain size (block/vmdk.c, "Invalid
	// granularity"): 2^21 sectors, 1 GiB.
	maxGrain = 1 << 21
)

type header struct {
	version          uint32
	flags            uint32
	capacity         uint64 // sectors
	grainSize        uint64 // sectors
	descriptorOffset uint64 // sectors
	descriptorSize   uint64 // sectors
	numGTEsPerGT     uint32
	rgdOffset        uint64
	gdOffset         uint64
	newline          [4]byte
	compressAlgo     uint16
}

func parseHeader(b []byte) header {
	le := binary.LittleEndian
	h := header{
		version:          le.Uint32(b[4:]),
		flags:            le.Uint32(b[8:]),
		capacity:         le.Uint64(b[12:]),
		grainSize:        le.Uint64(b[20:]),
		descriptorOffset: le.Uint64(b[28:]),
		descriptorSize:   le.Uint64(b[36:]),
		numGTEsPerGT:     le.Uint32(b[44:]),
		rgdOffset:        le.Uint64(b[48:]),
		gdOffset:         le.Uint64(b[56:]),
		compressAlgo:     le.Uint16(b[77:]),
	}
	copy(h.newline[:], b[73:77])
	return h
}

// Inspect inspects the three kinds of VMDK Sniff recognises: a hosted
// sparse extent ("KDMV", monolithicSparse or streamOptimized, whose
// embedded descriptor must describe the file itself), a text descriptor
// file (which by definition keeps the disk in other files: refused), and a
// legacy ESX COW extent ("COWD": refused as unsupported).
func Inspect(r io.ReaderAt, fileSize int64, limits disk.Limits) (disk.Facts, error) {
	var facts disk.Facts
	if err := inspect(blockio.Source{R: r, Size: fileSize}, limits.WithDefaults(), &facts, nil); err != nil {
		return facts, fmt.Errorf("vmdk: %w", err)
	}
	return facts, nil
}

// sparseMeta is what Open needs of an accepted sparse extent.
type sparseMeta struct {
	head header      // the header at the start of the file
	h    header      // the header in effect: the footer's when head.gdOffset is gdAtEnd
	desc *descriptor // nil without an embedded descriptor
}

func inspect(src blockio.Source, limits disk.Limits, facts *disk.Facts, meta *sparseMeta) error {
	head, err := src.Read("VMDK header", 0, min(src.Size, sectorSize))
	if err != nil {
		return err
	}
	switch {
	case bytes.HasPrefix(head, []byte("KDMV")):
		return inspectSparse(src, head, limits, facts, meta)
	case bytes.HasPrefix(head, []byte("COWD")):
		return refuse(disk.ErrUnsupported, "a legacy ESX COW disk (COWD); convert it with VMware tools or qemu-img on a trusted host first")
	}
	// A text descriptor file.
	if src.Size > limits.MaxDescriptorBytes {
		return refuse(disk.ErrLimit, "the file starts with a VMDK descriptor but is %d bytes long; a descriptor file is text of at most %s",
			src.Size, size.Format(limits.MaxDescriptorBytes))
	}
	text, err := src.Read("VMDK descriptor file", 0, src.Size)
	if err != nil {
		return err
	}
	if i := bytes.IndexByte(text, 0); i >= 0 {
		return refuse(disk.ErrFormat, "descriptor file holds a NUL byte at offset %#x: a descriptor file is text", i)
	}
	d, err := parseDescriptor(text, limits)
	if err != nil {
		return err
	}
	return checkDescriptor(d, false, limits)
}

func inspectSparse(src blockio.Source, head []byte, limits disk.Limits, facts *disk.Facts, meta *sparseMeta) error {
	if meta == nil {
		meta = &sparseMeta{}
	}
	if len(head) < sectorSize {
		return refuse(disk.ErrFormat, "sparse extent header truncated: the file is %d bytes", len(head))
	}
	h := parseHeader(head)
	if err := h.check(src.Size, limits); err != nil {
		return err
	}
	meta.head, meta.h = h, h
	// The geometry check bounds the capacity and the grain size.
	facts.Info = disk.Info{Format: "vmdk", VirtualSize: int64(h.capacity * sectorSize), ClusterSize: int64(h.grainSize * sectorSize)}
	if h.gdOffset == gdAtEnd {
		footer, err := checkFooter(src, head)
		if err != nil {
			return err
		}
		meta.h = footer
	}
	createType := "(no embedded descriptor)"
	if h.descriptorSize > 0 {
		text, err := src.Read("embedded VMDK descriptor", int64(h.descriptorOffset*sectorSize), int64(h.descriptorSize*sectorSize))
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(text, 0); i >= 0 {
			text = text[:i] // the descriptor is padded with NULs
		}
		if len(bytes.TrimSpace(text)) == 0 {
			// Space reserved but left empty, as in the extents of a
			// split (twoGbMaxExtentSparse) disk: self-contained.
			return h.report(createType, facts)
		}
		d, err := parseDescriptor(text, limits)
		if err != nil {
			return err
		}
		if err := checkDescriptor(d, true, limits); err != nil {
			return err
		}
		createType = d.keys["createtype"].value
		meta.desc = d
		facts.Info = sparseInfo(meta.h, d)
		if e := d.extents[0]; e.sectors != h.capacity {
			return refuse(disk.ErrFormat, "descriptor extent (line %d) of %d sectors disagrees with the header's capacity of %d sectors",
				e.line, e.sectors, h.capacity)
		}
	}
	return h.report(createType, facts)
}

// report notes what an accepted sparse extent is.
func (h header) report(createType string, facts *disk.Facts) error {
	facts.Notes = append(facts.Notes, fmt.Sprintf("VMDK version %d sparse extent %s, %d bytes virtual, %d-byte grains; it names no other file",
		h.version, createType, h.capacity*sectorSize, h.grainSize*sectorSize))
	return nil
}

// check bounds the geometry and the descriptor's place before anything
// would be read or allocated for them.
func (h header) check(fileSize int64, limits disk.Limits) error {
	if h.version < 1 || h.version > 3 {
		return refuse(disk.ErrUnsupported, "sparse extent version %d (1, 2 and 3 exist)", h.version)
	}
	if h.compressAlgo > 1 {
		return refuse(disk.ErrUnsupported, "compression algorithm %d (0 none and 1 deflate exist)", h.compressAlgo)
	}
	if err := limits.CheckSectors("the VMDK header", h.capacity); err != nil {
		return err
	}
	if h.grainSize == 0 || h.grainSize > maxGrain || bits.OnesCount64(h.grainSize) != 1 {
		return refuse(disk.ErrFormat, "grain size of %d sectors (a power of two up to %d sectors is needed)", h.grainSize, maxGrain)
	}
	if h.numGTEsPerGT == 0 || h.numGTEsPerGT > 1<<16 {
		return refuse(disk.ErrFormat, "%d entries per grain table (1 to 65536 allowed; VMware writes 512)", h.numGTEsPerGT)
	}
	perGD := h.grainSize * uint64(h.numGTEsPerGT) // sectors one grain directory entry maps
	gdEntries := (h.capacity + perGD - 1) / perGD
	if err := limits.CheckTable("the grain directory", gdEntries, 4); err != nil {
		return err
	}
	if h.flags&flagNLTest != 0 && h.newline != [4]byte{'\n', ' ', '\r', '\n'} {
		return refuse(disk.ErrFormat, "the newline check characters are %q instead of \"\\n \\r\\n\": the file was damaged by a text-mode transfer", h.newline[:])
	}
	fsize := uint64(fileSize)
	for _, t := range []struct {
		what string
		off  uint64
	}{{"grain directory", h.gdOffset}, {"redundant grain directory", h.rgdOffset}} {
		if t.off == 0 || t.off == gdAtEnd {
			continue
		}
		if t.off > fsize/sectorSize {
			return refuse(disk.ErrFormat, "%s at sector %d lies beyond the end of the file (%d bytes)", t.what, t.off, fileSize)
		}
	}
	if h.descriptorSize == 0 && h.descriptorOffset == 0 {
		return nil
	}
	if h.descriptorOffset == 0 || h.descriptorSize == 0 {
		return refuse(disk.ErrFormat, "embedded descriptor at sector %d of %d sectors", h.descriptorOffset, h.descriptorSize)
	}
	if h.descriptorSize > uint64(limits.MaxDescriptorBytes)/sectorSize {
		return refuse(disk.ErrLimit, "embedded descriptor of %d sectors exceeds the limit of %s", h.descriptorSize, size.Format(limits.MaxDescriptorBytes))
	}
	if h.descriptorOffset > fsize/sectorSize || h.descriptorSize*sectorSize > fsize-h.descriptorOffset*sectorSize {
		return refuse(disk.ErrFormat, "embedded descriptor at sector %d (%d sectors) runs past the end of the file (%d bytes)",
			h.descriptorOffset, h.descriptorSize, fileSize)
	}
	return nil
}

// checkFooter: a stream-optimized image whose header says "grain
// directory at the end" has a footer (a copy of the header) before the
// end-of-stream marker, and readers take the footer's values. It must agree
// with the header about the descriptor, or the file would show one
// descriptor to us and another to the next reader (oslo.utils does the same
// check).
func checkFooter(src blockio.Source, head []byte) (header, error) {
	if src.Size < 4*sectorSize {
		return header{}, refuse(disk.ErrFormat, "the header announces a footer, but the file (%d bytes) is too short to hold one", src.Size)
	}
	tail, err := src.Read("VMDK footer", src.Size-3*sectorSize, 3*sectorSize)
	if err != nil {
		return header{}, err
	}
	le := binary.LittleEndian
	marker, eos, footer := tail[:sectorSize], tail[2*sectorSize:], tail[sectorSize:2*sectorSize]
	if le.Uint32(marker[8:]) != 0 || le.Uint32(marker[12:]) != markerFooter {
		return header{}, refuse(disk.ErrFormat, "the header announces a footer, but no footer marker is at offset %#x", src.Size-3*sectorSize)
	}
	if le.Uint64(eos) != 0 || le.Uint32(eos[8:]) != 0 || le.Uint32(eos[12:]) != markerEOS {
		return header{}, refuse(disk.ErrFormat, "the header announces a footer, but no end-of-stream marker ends the file")
	}
	if !bytes.HasPrefix(footer, []byte("KDMV")) {
		return header{}, refuse(disk.ErrFormat, "the footer at offset %#x is not a sparse extent header", src.Size-2*sectorSize)
	}
	f, h := parseHeader(footer), parseHeader(head)
	if f.version != h.version || f.descriptorOffset != h.descriptorOffset || f.descriptorSize != h.descriptorSize {
		return header{}, refuse(disk.ErrUnsafe, "the footer names another descriptor (sector %d, %d sectors, version %d) than the header (sector %d, %d sectors, version %d): the file would read differently to different programs",
			f.descriptorOffset, f.descriptorSize, f.version, h.descriptorOffset, h.descriptorSize, h.version)
	}
	if f.gdOffset == gdAtEnd {
		return header{}, refuse(disk.ErrFormat, "the footer announces yet another footer")
	}
	if f.capacity != h.capacity || f.grainSize != h.grainSize || f.numGTEsPerGT != h.numGTEsPerGT {
		return header{}, refuse(disk.ErrFormat, "the footer's geometry (%d sectors, grain %d, %d entries per table) disagrees with the header's (%d, %d, %d)",
			f.capacity, f.grainSize, f.numGTEsPerGT, h.capacity, h.grainSize, h.numGTEsPerGT)
	}
	if f.gdOffset == 0 || f.gdOffset > uint64(src.Size)/sectorSize {
		return header{}, refuse(disk.ErrFormat, "the footer's grain directory at sector %d lies outside the file (%d bytes)", f.gdOffset, src.Size)
	}
	return f, nil
}
