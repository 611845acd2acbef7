package inspect

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/ucphhpc/gen-vm-image-go/disk"
)

// VMDK hosted sparse extent header (VMware "Virtual Disk Format 5.0",
// "Hosted Sparse Extent Header"), little-endian, 512 bytes.
const (
	vmdkSector       = 512
	vmdkGDAtEnd      = ^uint64(0) // gdOffset of a stream-optimized image with a footer
	vmdkFlagNLTest   = 1 << 0     // the four newline characters are valid
	vmdkMarkerFooter = 3
	vmdkMarkerEOS    = 0
	// vmdkMaxGrain is qemu's bound on the grain size (block/vmdk.c, "Invalid
	// granularity"): 2^21 sectors, 1 GiB.
	vmdkMaxGrain = 1 << 21
)

type vmdkHeader struct {
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

func parseVMDKHeader(b []byte) vmdkHeader {
	le := binary.LittleEndian
	h := vmdkHeader{
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

// checkVMDK inspects the three kinds of VMDK the sniffer recognises: a
// hosted sparse extent ("KDMV", monolithicSparse or streamOptimized, whose
// embedded descriptor must describe the file itself), a text descriptor
// file (which by definition keeps the disk in other files: refused), and a
// legacy ESX COW extent ("COWD": refused as unsupported).
func checkVMDK(src *source, p Policy, rep *Report) error {
	head, err := src.read("VMDK header", 0, min(src.size, vmdkSector))
	if err != nil {
		return err
	}
	switch {
	case bytes.HasPrefix(head, []byte("KDMV")):
		return checkVMDKSparse(src, head, p, rep)
	case bytes.HasPrefix(head, []byte("COWD")):
		return refuse(disk.ErrUnsupported, "a legacy ESX COW disk (COWD); convert it with VMware tools or qemu-img on a trusted host first")
	}
	// A text descriptor file.
	if src.size > maxDescriptorBytes {
		return refuse(ErrLimit, "the file starts with a VMDK descriptor but is %d bytes long; a descriptor file is text of at most %s",
			src.size, human(maxDescriptorBytes))
	}
	text, err := src.read("VMDK descriptor file", 0, src.size)
	if err != nil {
		return err
	}
	if i := bytes.IndexByte(text, 0); i >= 0 {
		return refuse(disk.ErrFormat, "descriptor file holds a NUL byte at offset %#x: a descriptor file is text", i)
	}
	d, err := parseDescriptor(text)
	if err != nil {
		return err
	}
	return checkDescriptor(d, false, p)
}

func checkVMDKSparse(src *source, head []byte, p Policy, rep *Report) error {
	if len(head) < vmdkSector {
		return refuse(disk.ErrFormat, "sparse extent header truncated: the file is %d bytes", len(head))
	}
	h := parseVMDKHeader(head)
	if err := h.check(src.size, p); err != nil {
		return err
	}
	if h.gdOffset == vmdkGDAtEnd {
		if err := checkVMDKFooter(src, head); err != nil {
			return err
		}
	}
	createType := "(no embedded descriptor)"
	if h.descriptorSize > 0 {
		text, err := src.read("embedded VMDK descriptor", int64(h.descriptorOffset*vmdkSector), int64(h.descriptorSize*vmdkSector))
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(text, 0); i >= 0 {
			text = text[:i] // the descriptor is padded with NULs
		}
		if len(bytes.TrimSpace(text)) == 0 {
			// Space reserved but left empty, as in the extents of a
			// split (twoGbMaxExtentSparse) disk: self-contained.
			return h.report(createType, rep)
		}
		d, err := parseDescriptor(text)
		if err != nil {
			return err
		}
		if err := checkDescriptor(d, true, p); err != nil {
			return err
		}
		createType = d.keys["createtype"].value
		if e := d.extents[0]; e.sectors != h.capacity {
			return refuse(disk.ErrFormat, "descriptor extent (line %d) of %d sectors disagrees with the header's capacity of %d sectors",
				e.line, e.sectors, h.capacity)
		}
	}
	return h.report(createType, rep)
}

func (h vmdkHeader) report(createType string, rep *Report) error {
	rep.VirtualSize = int64(h.capacity * vmdkSector)
	rep.Notes = append(rep.Notes, fmt.Sprintf("VMDK version %d sparse extent %s, %d bytes virtual, %d-byte grains; it names no other file",
		h.version, createType, rep.VirtualSize, h.grainSize*vmdkSector))
	return nil
}

// check bounds the geometry and the descriptor's place before anything
// would be read or allocated for them.
func (h vmdkHeader) check(fileSize int64, p Policy) error {
	if h.version < 1 || h.version > 3 {
		return refuse(disk.ErrUnsupported, "sparse extent version %d (1, 2 and 3 exist)", h.version)
	}
	if h.compressAlgo > 1 {
		return refuse(disk.ErrUnsupported, "compression algorithm %d (0 none and 1 deflate exist)", h.compressAlgo)
	}
	if err := checkSectors("the VMDK header", h.capacity, p); err != nil {
		return err
	}
	if h.grainSize == 0 || h.grainSize > vmdkMaxGrain || bits.OnesCount64(h.grainSize) != 1 {
		return refuse(disk.ErrFormat, "grain size of %d sectors (a power of two up to %d sectors is needed)", h.grainSize, vmdkMaxGrain)
	}
	if h.numGTEsPerGT == 0 || h.numGTEsPerGT > 1<<16 {
		return refuse(disk.ErrFormat, "%d entries per grain table (1 to 65536 allowed; VMware writes 512)", h.numGTEsPerGT)
	}
	perGD := h.grainSize * uint64(h.numGTEsPerGT) // sectors one grain directory entry maps
	gdEntries := (h.capacity + perGD - 1) / perGD
	if err := checkTable("the grain directory", gdEntries, 4); err != nil {
		return err
	}
	if h.flags&vmdkFlagNLTest != 0 && h.newline != [4]byte{'\n', ' ', '\r', '\n'} {
		return refuse(disk.ErrFormat, "the newline check characters are %q instead of \"\\n \\r\\n\": the file was damaged by a text-mode transfer", h.newline[:])
	}
	size := uint64(fileSize)
	for _, t := range []struct {
		what string
		off  uint64
	}{{"grain directory", h.gdOffset}, {"redundant grain directory", h.rgdOffset}} {
		if t.off == 0 || t.off == vmdkGDAtEnd {
			continue
		}
		if t.off > size/vmdkSector {
			return refuse(disk.ErrFormat, "%s at sector %d lies beyond the end of the file (%d bytes)", t.what, t.off, fileSize)
		}
	}
	if h.descriptorSize == 0 && h.descriptorOffset == 0 {
		return nil
	}
	if h.descriptorOffset == 0 || h.descriptorSize == 0 {
		return refuse(disk.ErrFormat, "embedded descriptor at sector %d of %d sectors", h.descriptorOffset, h.descriptorSize)
	}
	if h.descriptorSize > maxDescriptorBytes/vmdkSector {
		return refuse(ErrLimit, "embedded descriptor of %d sectors exceeds the limit of %s", h.descriptorSize, human(maxDescriptorBytes))
	}
	if h.descriptorOffset > size/vmdkSector || h.descriptorSize*vmdkSector > size-h.descriptorOffset*vmdkSector {
		return refuse(disk.ErrFormat, "embedded descriptor at sector %d (%d sectors) runs past the end of the file (%d bytes)",
			h.descriptorOffset, h.descriptorSize, fileSize)
	}
	return nil
}

// checkVMDKFooter: a stream-optimized image whose header says "grain
// directory at the end" has a footer (a copy of the header) before the
// end-of-stream marker, and readers take the footer's values. It must agree
// with the header about the descriptor, or the file would show one
// descriptor to us and another to the next reader (oslo.utils does the same
// check).
func checkVMDKFooter(src *source, head []byte) error {
	if src.size < 4*vmdkSector {
		return refuse(disk.ErrFormat, "the header announces a footer, but the file (%d bytes) is too short to hold one", src.size)
	}
	tail, err := src.read("VMDK footer", src.size-3*vmdkSector, 3*vmdkSector)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	marker, eos, footer := tail[:vmdkSector], tail[2*vmdkSector:], tail[vmdkSector:2*vmdkSector]
	if le.Uint32(marker[8:]) != 0 || le.Uint32(marker[12:]) != vmdkMarkerFooter {
		return refuse(disk.ErrFormat, "the header announces a footer, but no footer marker is at offset %#x", src.size-3*vmdkSector)
	}
	if le.Uint64(eos) != 0 || le.Uint32(eos[8:]) != 0 || le.Uint32(eos[12:]) != vmdkMarkerEOS {
		return refuse(disk.ErrFormat, "the header announces a footer, but no end-of-stream marker ends the file")
	}
	if !bytes.HasPrefix(footer, []byte("KDMV")) {
		return refuse(disk.ErrFormat, "the footer at offset %#x is not a sparse extent header", src.size-2*vmdkSector)
	}
	f, h := parseVMDKHeader(footer), parseVMDKHeader(head)
	if f.version != h.version || f.descriptorOffset != h.descriptorOffset || f.descriptorSize != h.descriptorSize {
		return refuse(disk.ErrUnsafe, "the footer names another descriptor (sector %d, %d sectors, version %d) than the header (sector %d, %d sectors, version %d): the file would read differently to different programs",
			f.descriptorOffset, f.descriptorSize, f.version, h.descriptorOffset, h.descriptorSize, h.version)
	}
	if f.gdOffset == vmdkGDAtEnd {
		return refuse(disk.ErrFormat, "the footer announces yet another footer")
	}
	if f.capacity != h.capacity || f.grainSize != h.grainSize || f.numGTEsPerGT != h.numGTEsPerGT {
		return refuse(disk.ErrFormat, "the footer's geometry (%d sectors, grain %d, %d entries per table) disagrees with the header's (%d, %d, %d)",
			f.capacity, f.grainSize, f.numGTEsPerGT, h.capacity, h.grainSize, h.numGTEsPerGT)
	}
	if f.gdOffset == 0 || f.gdOffset > uint64(src.size)/vmdkSector {
		return refuse(disk.ErrFormat, "the footer's grain directory at sector %d lies outside the file (%d bytes)", f.gdOffset, src.size)
	}
	return nil
}
