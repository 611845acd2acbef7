package vmdk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// The writer makes hosted sparse extents with 64 KiB grains and 512
// entries per grain table, as qemu-img and VMware do.
//
// monolithicSparse (version 1, flags 3), qemu-img's layout:
//
//	sector 0        header
//	sectors 1-20    descriptor
//	sector 21       redundant grain directory, then the redundant grain tables
//	then            grain directory, then the grain tables
//	then            grains, a grain aligned, appended as writes need them
//
// Grain tables for a size Resize grew past the reserved ones, and a grain
// directory that outgrew its place, are appended at Close.
//
// streamOptimized (version 3, flags 0x30001), VMware's layout (as the
// ESXi-made images qemu keeps in its tests): header with the grain
// directory "at the end", descriptor, grains as {marker, zlib stream}
// from sector 128 in increasing order, each grain table after its grains
// behind a GT marker, then a GD marker and the grain directory, a footer
// marker and the footer (the header with the directory's place), and an
// end-of-stream marker.
const (
	wrGrainSectors  = 128 // 64 KiB
	wrGrainBytes    = wrGrainSectors * sectorSize
	wrGTEntries     = 512
	wrGTSectors     = wrGTEntries * 4 / sectorSize
	wrDescOffset    = 1
	wrDescSectors   = 20
	wrStreamOverHd  = 128 // sectors before the first grain of a stream
	wrMaxDirtyGTs   = 1024
	wrSectorsPerGT  = wrGTEntries * wrGrainSectors
	wrBytesPerGT    = wrSectorsPerGT * sectorSize
	wrNoGrainOffset = -1
)

var errWriterClosed = fmt.Errorf("vmdk: writer: %w", os.ErrClosed)

// Create starts a new VMDK of the given virtual size (rounded up to a
// sector) in f, which it empties first, with opt's subformat,
// adapter_type and hwversion. With opt.Compress (or
// subformat=streamOptimized) the writer is a disk.Compressor. The image is
// valid only after Close, which neither syncs nor closes f.
func Create(f *os.File, size int64, opt disk.CreateOptions) (disk.Writer, error) {
	s, err := parseSettings(opt)
	if err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, fmt.Errorf("vmdk: negative size %d", size)
	}
	size = (size + sectorSize - 1) / sectorSize * sectorSize
	if err := (disk.Limits{}).CheckVirtualSize("the VMDK to create", uint64(size)); err != nil {
		return nil, fmt.Errorf("vmdk: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("vmdk: create: %w", err)
	}
	if st.Size() != 0 {
		if err := f.Truncate(0); err != nil {
			return nil, fmt.Errorf("vmdk: create: %w", err)
		}
	}
	w := &wrImage{f: f, set: s, size: size, name: extentName(f.Name()), gts: map[int64][]uint32{}, flushed: map[int64]bool{}, lastGrain: wrNoGrainOffset}
	if s.stream {
		w.end = wrStreamOverHd * sectorSize
		w.curGT = -1
		return &streamWriter{wrImage: w, pendingIdx: -1}, nil
	}
	// qemu-img's layout for the size asked for.
	gtCount := gtCountFor(size)
	w.gdSectors = (gtCount*4 + sectorSize - 1) / sectorSize
	w.rgdSector = wrDescOffset + wrDescSectors
	w.rgtSector = w.rgdSector + w.gdSectors
	w.gdSector = w.rgtSector + gtCount*wrGTSectors
	w.gtSector = w.gdSector + w.gdSectors
	w.reservedGTs = gtCount
	w.end = (w.gtSector + gtCount*wrGTSectors + wrGrainSectors - 1) / wrGrainSectors * wrGrainSectors * sectorSize
	w.overHead = w.end / sectorSize
	return w, nil
}

// BlockSize is the grain: a sparse extent allocates whole grains.
func BlockSize(disk.CreateOptions) int64 { return wrGrainBytes }

func gtCountFor(size int64) int64 {
	sectors := size / sectorSize
	return (sectors + wrSectorsPerGT - 1) / wrSectorsPerGT
}

// extentName is the name the descriptor gives the extent: the file's, or
// the name it will have when it is a temporary file of package output
// (".NAME.tmp-gvi-XXXX"), so that the name does not depend on a random
// suffix. Readers of a monolithic file ignore it.
func extentName(path string) string {
	base := filepath.Base(path)
	if i := strings.Index(base, ".tmp-gvi-"); i > 0 && base[0] == '.' {
		base = base[1:i]
	}
	if base == "" || strings.ContainsAny(base, "\"\n\r") {
		base = "disk.vmdk"
	}
	return base
}

// wrImage is the monolithicSparse writer, and what the stream writer
// shares with it.
type wrImage struct {
	f    *os.File
	set  settings
	size int64 // virtual bytes, a multiple of 512
	name string
	end  int64 // first free host byte
	// crc sums the data written, for a CID that depends on the content.
	crc uint32

	// monolithicSparse: where the reserved directories and tables are
	// (sectors), and the grain tables in memory.
	overHead                       int64
	rgdSector, gdSector, gdSectors int64
	rgtSector, gtSector            int64
	reservedGTs                    int64
	gts                            map[int64][]uint32 // dirty or beyond the reserved ones
	flushed                        map[int64]bool     // reserved tables written out
	lastGrain                      int64              // stream: the last grain stored

	// stream: the grain table being filled and the directory.
	curGT int64
	gd    []uint32

	err    error
	closed bool
}

func (w *wrImage) usable() error {
	if w.closed {
		return errWriterClosed
	}
	return w.err
}

func (w *wrImage) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return err
}

// gt returns grain table i of a monolithic image, reading a reserved one
// that was written out before.
func (w *wrImage) gt(i int64) ([]uint32, error) {
	if t, ok := w.gts[i]; ok {
		return t, nil
	}
	if len(w.gts) >= wrMaxDirtyGTs {
		if err := w.flushGTs(false); err != nil {
			return nil, err
		}
	}
	t := make([]uint32, wrGTEntries)
	if w.flushed[i] {
		buf := make([]byte, wrGTEntries*4)
		if err := blockio.ReadFull(w.f, buf, (w.gtSector+i*wrGTSectors)*sectorSize); err != nil {
			return nil, fmt.Errorf("vmdk: reading back grain table %d: %w", i, err)
		}
		for k := range t {
			t[k] = binary.LittleEndian.Uint32(buf[k*4:])
		}
	}
	w.gts[i] = t
	return t, nil
}

// flushGTs writes the reserved grain tables in memory, both copies, and
// forgets them; the others stay until Close places them (all, when
// placing them is asked).
func (w *wrImage) flushGTs(all bool) error {
	buf := make([]byte, wrGTEntries*4)
	for i, t := range w.gts {
		if i >= w.reservedGTs && !all {
			continue
		}
		for k, e := range t {
			binary.LittleEndian.PutUint32(buf[k*4:], e)
		}
		for _, base := range []int64{w.gtSector, w.rgtSector} {
			if _, err := w.f.WriteAt(buf, (base+i*wrGTSectors)*sectorSize); err != nil {
				return fmt.Errorf("vmdk: writing grain table %d: %w", i, err)
			}
		}
		delete(w.gts, i)
		w.flushed[i] = true
	}
	return nil
}

// WriteAt writes virtual bytes, allocating a grain at the end of the file
// for each grain written to first; grains that would hold only zeros are
// not allocated.
func (w *wrImage) WriteAt(p []byte, off int64) (int, error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	if off < 0 || off > w.size || int64(len(p)) > w.size-off {
		return 0, fmt.Errorf("vmdk: write of %d bytes at %d beyond the virtual size %d", len(p), off, w.size)
	}
	// A run of segments that are contiguous in the file too is one write.
	runHost, runStart, runEnd := int64(-1), 0, 0
	flush := func() error {
		if runEnd > runStart {
			if _, err := w.f.WriteAt(p[runStart:runEnd], runHost); err != nil {
				return w.fail(fmt.Errorf("vmdk: writing data at %#x: %w", runHost, err))
			}
			w.crc = crc32.Update(w.crc, crc32.MakeTable(crc32.Castagnoli), p[runStart:runEnd])
		}
		runStart, runEnd = 0, 0
		return nil
	}
	for done := 0; done < len(p); {
		pos := off + int64(done)
		g := pos / wrGrainBytes
		in := pos % wrGrainBytes
		n := int(min(int64(len(p)-done), wrGrainBytes-in))
		seg := p[done : done+n]
		t, err := w.gt(g / wrGTEntries)
		if err != nil {
			return done, w.fail(err)
		}
		e := &t[g%wrGTEntries]
		if *e == 0 {
			if blockio.IsZero(seg) {
				if err := flush(); err != nil {
					return done, err
				}
				done += n
				continue
			}
			*e = uint32(w.end / sectorSize)
			w.end += wrGrainBytes
		}
		host := int64(*e)*sectorSize + in
		if runEnd > runStart && runHost+int64(runEnd-runStart) == host {
			runEnd += n
		} else {
			if err := flush(); err != nil {
				return done, err
			}
			runHost, runStart, runEnd = host, done, done+n
		}
		done += n
	}
	if err := flush(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Resize changes the virtual size, rounded up to a sector. Shrinking needs
// allowShrink; it forgets the grains beyond the new size and zeroes the
// tail of the last grain kept, so that a later grow reads zeros there.
func (w *wrImage) Resize(size int64, allowShrink bool) error {
	if err := w.usable(); err != nil {
		return err
	}
	size = (size + sectorSize - 1) / sectorSize * sectorSize
	if err := (disk.Limits{}).CheckVirtualSize("the VMDK", uint64(max(size, 0))); err != nil || size < 0 {
		return fmt.Errorf("vmdk: resize to %d bytes: %w", size, err)
	}
	if size >= w.size {
		w.size = size
		return nil
	}
	if !allowShrink {
		return fmt.Errorf("vmdk: resize from %d to %d bytes: %w", w.size, size, disk.ErrShrink)
	}
	keep := (size + wrGrainBytes - 1) / wrGrainBytes // grains kept
	for i := keep / wrGTEntries; i < gtCountFor(w.size); i++ {
		if i*wrGTEntries >= keep && i >= w.reservedGTs {
			delete(w.gts, i) // placed at Close only if still needed
			continue
		}
		t, err := w.gt(i)
		if err != nil {
			return w.fail(err)
		}
		for k := max(0, keep-i*wrGTEntries); k < wrGTEntries; k++ {
			t[k] = 0
		}
	}
	if tail := size % wrGrainBytes; tail != 0 {
		g := size / wrGrainBytes
		t, err := w.gt(g / wrGTEntries)
		if err != nil {
			return w.fail(err)
		}
		if e := t[g%wrGTEntries]; e != 0 {
			if _, err := w.f.WriteAt(make([]byte, wrGrainBytes-tail), int64(e)*sectorSize+tail); err != nil {
				return w.fail(fmt.Errorf("vmdk: zeroing the tail of a grain: %w", err))
			}
		}
	}
	w.size = size
	return nil
}

// Close writes the grain tables, the grain directories, the descriptor and
// the header.
func (w *wrImage) Close() error {
	if err := w.usable(); err != nil {
		return err
	}
	w.closed = true
	if err := w.finish(); err != nil {
		w.err = err
		return err
	}
	return nil
}

func (w *wrImage) finish() error {
	if err := w.flushGTs(false); err != nil {
		return err
	}
	gtCount := gtCountFor(w.size)
	gtSector := func(i int64, redundant bool) int64 {
		if redundant {
			return w.rgtSector + i*wrGTSectors
		}
		return w.gtSector + i*wrGTSectors
	}
	// Grain tables beyond the reserved ones, both copies, at the end.
	extra := map[int64][2]int64{}
	buf := make([]byte, wrGTEntries*4)
	for i := w.reservedGTs; i < gtCount; i++ {
		places := [2]int64{w.end / sectorSize, w.end/sectorSize + wrGTSectors}
		w.end += 2 * wrGTSectors * sectorSize
		extra[i] = places
		if t, ok := w.gts[i]; ok {
			for k, e := range t {
				binary.LittleEndian.PutUint32(buf[k*4:], e)
			}
			for _, s := range places {
				if _, err := w.f.WriteAt(buf, s*sectorSize); err != nil {
					return fmt.Errorf("vmdk: writing grain table %d: %w", i, err)
				}
			}
		}
	}
	// The directories, in their place or, when they outgrew it, at the end.
	gdSectors := (gtCount*4 + sectorSize - 1) / sectorSize
	gdSector, rgdSector := w.gdSector, w.rgdSector
	if gdSectors > w.gdSectors {
		rgdSector = w.end / sectorSize
		gdSector = rgdSector + gdSectors
		w.end += 2 * gdSectors * sectorSize
	}
	for _, redundant := range []bool{false, true} {
		gd := make([]byte, gdSectors*sectorSize)
		for i := range gtCount {
			s := int64(0)
			if p, ok := extra[i]; ok {
				s = p[0]
				if redundant {
					s = p[1]
				}
			} else {
				s = gtSector(i, redundant)
			}
			binary.LittleEndian.PutUint32(gd[i*4:], uint32(s))
		}
		at := gdSector
		if redundant {
			at = rgdSector
		}
		if _, err := w.f.WriteAt(gd, at*sectorSize); err != nil {
			return fmt.Errorf("vmdk: writing the grain directory: %w", err)
		}
	}
	if err := w.extend(); err != nil {
		return err
	}
	h := header{
		version: 1, flags: flagNLTest | flagRGD, capacity: uint64(w.size / sectorSize), grainSize: wrGrainSectors,
		descriptorOffset: wrDescOffset, descriptorSize: wrDescSectors, numGTEsPerGT: wrGTEntries,
		rgdOffset: uint64(rgdSector), gdOffset: uint64(gdSector),
	}
	return w.writeHead(h, uint64(w.overHead), subMonolithicSparse)
}

// extend makes the file reach w.end: a grain only partly written, or
// tables of zeros, must still lie inside the file.
func (w *wrImage) extend() error {
	st, err := w.f.Stat()
	if err != nil {
		return fmt.Errorf("vmdk: %w", err)
	}
	if st.Size() < w.end {
		if err := w.f.Truncate(w.end); err != nil {
			return fmt.Errorf("vmdk: %w", err)
		}
	}
	return nil
}

// writeHead writes the descriptor and the header at the start of the file.
func (w *wrImage) writeHead(h header, overHead uint64, createType string) error {
	desc := w.descriptor(createType)
	if len(desc) > wrDescSectors*sectorSize {
		return fmt.Errorf("vmdk: the descriptor of %d bytes does not fit in its %d sectors", len(desc), wrDescSectors)
	}
	area := make([]byte, wrDescSectors*sectorSize)
	copy(area, desc)
	if _, err := w.f.WriteAt(area, wrDescOffset*sectorSize); err != nil {
		return fmt.Errorf("vmdk: writing the descriptor: %w", err)
	}
	if _, err := w.f.WriteAt(h.marshal(overHead), 0); err != nil {
		return fmt.Errorf("vmdk: writing the header: %w", err)
	}
	return nil
}

// descriptor is the embedded descriptor, as qemu-img writes it. The CID
// is a checksum of the data written, so that the same content gives the
// same file (qemu draws it at random).
func (w *wrImage) descriptor(createType string) []byte {
	sectors := uint64(w.size / sectorSize)
	cyl, heads := geometry(w.set.adapter, sectors)
	cid := crc32.Update(w.crc, crc32.MakeTable(crc32.Castagnoli), binary.LittleEndian.AppendUint64([]byte(createType), sectors))
	if cid == 0xffffffff || cid == 0xfffffffe {
		cid = 0xfffffffd // ffffffff means "no parent"; fffffffe marks a disk being made
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Disk DescriptorFile\nversion=1\nCID=%08x\nparentCID=ffffffff\ncreateType=\"%s\"\n\n", cid, createType)
	fmt.Fprintf(&b, "# Extent description\nRW %d SPARSE \"%s\"\n\n", sectors, w.name)
	fmt.Fprintf(&b, "# The Disk Data Base\n#DDB\n\n")
	fmt.Fprintf(&b, "ddb.virtualHWVersion = \"%s\"\nddb.geometry.cylinders = \"%d\"\nddb.geometry.heads = \"%d\"\nddb.geometry.sectors = \"63\"\n",
		w.set.hwVersion, cyl, heads)
	fmt.Fprintf(&b, "ddb.adapterType = \"%s\"\nddb.toolsVersion = \"%s\"\n", w.set.adapter, w.set.toolsVersion)
	return b.Bytes()
}

// errOutOfOrder: a stream-optimized extent is written once, in order.
var errOutOfOrder = errors.New("a streamOptimized vmdk is written in increasing order, each grain once")
