package vmdk

import (
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
	"github.com/ucphhpc/gen-vm-image-go/internal/inflate"
)

// maxCompressedGrain bounds the grain of a compressed extent: each read
// inflates whole grains into a buffer of that size. VMware and qemu write
// 64 KiB grains; qemu accepts up to 1 GiB, which a hostile file would
// turn into a 1 GiB allocation per reader.
const maxCompressedGrain = 2 << 20

// firstGrainRead is what is read first of a compressed grain with a
// marker: most 64 KiB grains compress to less (qemu reads two grains).
const firstGrainRead = 32 << 10

// gtCacheBytes bounds the grain tables a reader keeps.
const gtCacheBytes = 8 << 20

// rdImage is an opened hosted sparse extent (monolithicSparse or
// streamOptimized), read as qemu's block/vmdk.c reads it.
type rdImage struct {
	r          io.ReaderAt
	fileSize   int64
	h          header
	desc       *descriptor
	size       int64 // virtual bytes
	grainBytes int64
	gtEntries  int64
	compressed bool
	markers    bool
	zeroGrain  bool
	gd         []uint32 // grain directory: sector of each grain table, 0 = none
	gts        *blockio.TableCache
	grains     sync.Pool // *[]byte of 2*grainBytes: compressed input
	outs       sync.Pool // *[]byte of grainBytes: inflated grain
}

// Open opens the hosted sparse extent held in the size bytes of r. It
// refuses what Inspect refuses (descriptor files, extents in other files,
// delta disks), then reads the grain directory (the footer's, in a
// stream-optimized image whose header says it is at the end), bounded by
// the file.
func Open(r io.ReaderAt, size int64, _ disk.OpenOptions) (disk.Image, error) {
	var facts disk.Facts
	meta := &sparseMeta{}
	src := blockio.Source{R: r, Size: size}
	limits := disk.Limits{}.WithDefaults()
	if err := inspect(src, limits, &facts, meta); err != nil {
		return nil, fmt.Errorf("vmdk: %w", err)
	}
	if facts.Info.Format == "" {
		return nil, fmt.Errorf("vmdk: %w: not a hosted sparse extent", disk.ErrUnsupported)
	}
	h := meta.h
	im := &rdImage{
		r: r, fileSize: size, h: h, desc: meta.desc,
		size:       int64(h.capacity) * sectorSize,
		grainBytes: int64(h.grainSize) * sectorSize,
		gtEntries:  int64(h.numGTEsPerGT),
		compressed: h.compressAlgo == compressDeflate,
		markers:    h.flags&flagMarkers != 0,
		zeroGrain:  h.flags&flagZeroGrain != 0,
	}
	if im.compressed && im.grainBytes > maxCompressedGrain {
		return nil, fmt.Errorf("vmdk: %w: compressed grains of %d bytes (at most %d are read)", disk.ErrUnsupported, im.grainBytes, maxCompressedGrain)
	}
	if h.gdOffset == 0 || h.gdOffset == gdAtEnd {
		return nil, fmt.Errorf("vmdk: %w: no grain directory (offset %#x)", disk.ErrFormat, h.gdOffset)
	}
	perGT := uint64(im.gtEntries) * h.grainSize
	entries := (h.capacity + perGT - 1) / perGT // bounded by the header check
	raw, err := src.Read("grain directory", int64(h.gdOffset)*sectorSize, int64(entries)*4)
	if err != nil {
		return nil, fmt.Errorf("vmdk: %w", err)
	}
	im.gd = make([]uint32, entries)
	for i := range im.gd {
		im.gd[i] = binary.LittleEndian.Uint32(raw[i*4:])
		// A grain table must lie inside the file; qemu fails the read of
		// one that does not, so we refuse it when we meet it.
	}
	gtBytes := im.gtEntries * 4
	im.gts = blockio.NewTableCache(gtCacheBytes / gtBytes)
	im.grains.New = func() any { b := make([]byte, 2*im.grainBytes); return &b }
	im.outs.New = func() any { b := make([]byte, im.grainBytes); return &b }
	return im, nil
}

func (im *rdImage) Size() int64  { return im.size }
func (im *rdImage) Close() error { return nil }

// Info is what qemu-img info shows of a hosted sparse extent.
func (im *rdImage) Info() disk.Info {
	return sparseInfo(im.h, im.desc)
}

func sparseInfo(h header, d *descriptor) disk.Info {
	info := disk.Info{Format: "vmdk", VirtualSize: int64(h.capacity) * sectorSize, ClusterSize: int64(h.grainSize) * sectorSize}
	if d == nil {
		return info
	}
	hex := func(key string) int64 {
		v, err := strconv.ParseUint(d.keys[key].value, 16, 32)
		if err != nil {
			return 0
		}
		return int64(v)
	}
	extent := []disk.Field{}
	if h.compressAlgo == compressDeflate {
		extent = append(extent, disk.Field{Key: "compressed", Label: "compressed", Value: true})
	}
	extent = append(extent,
		disk.Field{Key: "virtual-size", Label: "virtual size", Value: int64(h.capacity) * sectorSize},
		disk.Field{Key: "filename", Label: "filename", Value: disk.FileName{}},
		disk.Field{Key: "cluster-size", Label: "cluster size", Value: int64(h.grainSize) * sectorSize},
		disk.Field{Key: "format", Label: "format", Value: ""})
	info.Specific = &disk.Specific{Type: "vmdk", Fields: []disk.Field{
		{Key: "cid", Label: "cid", Value: hex("cid")},
		{Key: "parent-cid", Label: "parent cid", Value: hex("parentcid")},
		{Key: "create-type", Label: "create type", Value: d.keys["createtype"].value},
		{Key: "extents", Label: "extents", Value: [][]disk.Field{extent}},
	}}
	return info
}

// grainTable returns grain table i, or nil when the directory has none.
func (im *rdImage) grainTable(i int64) ([]byte, error) {
	sector := int64(im.gd[i])
	if sector == 0 {
		return nil, nil
	}
	n := im.gtEntries * 4
	off := sector * sectorSize
	if off > im.fileSize || n > im.fileSize-off {
		return nil, fmt.Errorf("vmdk: %w: grain table %d at offset %#x lies beyond the end of the file (%d bytes)", disk.ErrFormat, i, off, im.fileSize)
	}
	return im.gts.Get(off, n, func(buf []byte) error {
		if err := blockio.ReadFull(im.r, buf, off); err != nil {
			return fmt.Errorf("vmdk: %w: reading grain table %d at offset %#x: %w", disk.ErrFormat, i, off, err)
		}
		return nil
	})
}

// grainState is what a grain table entry says about one grain.
type grainState int

const (
	grainUnallocated grainState = iota
	grainZero
	grainData
)

// grain returns the state of virtual grain g and its host sector.
func (im *rdImage) grain(g int64) (grainState, int64, error) {
	gt, err := im.grainTable(g / im.gtEntries)
	if err != nil || gt == nil {
		return grainUnallocated, 0, err
	}
	entry := binary.LittleEndian.Uint32(gt[(g%im.gtEntries)*4:])
	return im.entryState(entry), int64(entry), nil
}

// entryState is what a grain table entry says: 0 is a grain never
// written, 1 a zeroed grain when the header has the zeroed-grain flag
// (without it, qemu reads sector 1 as data, and so do we).
func (im *rdImage) entryState(entry uint32) grainState {
	switch {
	case entry == 0:
		return grainUnallocated
	case entry == gteZeroed && im.zeroGrain:
		return grainZero
	}
	return grainData
}

// Extents describes [off, off+n) grain by grain.
func (im *rdImage) Extents(off, n int64) ([]disk.Extent, error) {
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("vmdk: extents: negative range")
	}
	end := min(off+n, im.size)
	var out []disk.Extent
	add := func(e disk.Extent) {
		if k := len(out) - 1; k >= 0 && out[k].Zero == e.Zero && out[k].Compressed == e.Compressed && out[k].End() == e.Offset {
			out[k].Length += e.Length
			return
		}
		out = append(out, e)
	}
	perGT := im.gtEntries * im.grainBytes
	for pos := off; pos < end; {
		if im.gd[pos/perGT] == 0 {
			// A whole grain table's range without a table.
			next := min((pos/perGT+1)*perGT, end)
			add(disk.Extent{Offset: pos, Length: next - pos, Zero: true})
			pos = next
			continue
		}
		gt, err := im.grainTable(pos / perGT)
		if err != nil {
			return nil, err
		}
		// The grains of this table, without looking the table up again.
		tableEnd := min((pos/perGT+1)*perGT, end)
		for pos < tableEnd {
			g := pos / im.grainBytes
			st := im.entryState(binary.LittleEndian.Uint32(gt[(g%im.gtEntries)*4:]))
			next := min((g+1)*im.grainBytes, tableEnd)
			add(disk.Extent{Offset: pos, Length: next - pos, Zero: st != grainData, Compressed: st == grainData && im.compressed})
			pos = next
		}
	}
	return out, nil
}

// ReadAt reads the virtual disk; unallocated and zeroed grains read as
// zeros, and so does whatever lies past the end of the file (qemu's block
// layer reads it so).
func (im *rdImage) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("vmdk: read at negative offset %d", off)
	}
	if off >= im.size {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > im.size-off {
		p = p[:im.size-off]
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		g := pos / im.grainBytes
		in := pos - g*im.grainBytes
		n := int(min(int64(len(p)-done), im.grainBytes-in))
		st, sector, err := im.grain(g)
		if err != nil {
			return done, err
		}
		buf := p[done : done+n]
		switch {
		case st != grainData:
			clear(buf)
		case im.compressed:
			err = im.readCompressed(g, sector, in, buf)
		default:
			// Coalesce the following grains that are stored right after
			// this one into one read.
			host := sector*sectorSize + in
			for next := g + 1; done+n < len(p); next++ {
				st2, s2, err2 := im.grain(next)
				if err2 != nil || st2 != grainData || s2*sectorSize != host+int64(n) {
					break
				}
				n += int(min(int64(len(p)-done-n), im.grainBytes))
			}
			buf = p[done : done+n]
			err = blockio.ReadPadded(im.r, im.fileSize, buf, host)
			if err != nil {
				err = fmt.Errorf("vmdk: reading grain %d at offset %#x: %w", g, host, err)
			}
		}
		if err != nil {
			return done, err
		}
		done += n
	}
	if done < want {
		return done, io.EOF
	}
	return done, nil
}

// readCompressed inflates grain g, stored at host sector, and copies the
// part of it at in into buf. As qemu does, it reads up to two grains of
// host bytes, takes the marker's length (streamOptimized) or all of them,
// and refuses a grain that would inflate past its grain size or that does
// not hold the part asked for.
func (im *rdImage) readCompressed(g, sector, in int64, buf []byte) error {
	host := sector * sectorSize
	if host >= im.fileSize {
		return fmt.Errorf("vmdk: %w: grain %d at offset %#x lies beyond the end of the file (%d bytes)", disk.ErrFormat, g, host, im.fileSize)
	}
	bp := im.grains.Get().(*[]byte)
	defer im.grains.Put(bp)
	raw := (*bp)[:min(int64(len(*bp)), im.fileSize-host)]
	data := raw
	if im.markers {
		// The marker says how long the stream is: read a first piece that
		// holds most grains whole, and the rest only when it does not.
		first := raw[:min(int64(len(raw)), firstGrainRead)]
		if err := blockio.ReadFull(im.r, first, host); err != nil {
			return fmt.Errorf("vmdk: reading grain %d at offset %#x: %w", g, host, err)
		}
		if len(first) < grainMarkerSize {
			return fmt.Errorf("vmdk: %w: grain %d at offset %#x: truncated grain marker", disk.ErrFormat, g, host)
		}
		n := int64(binary.LittleEndian.Uint32(first[8:]))
		if n == 0 || n > int64(len(raw))-grainMarkerSize {
			return fmt.Errorf("vmdk: %w: grain %d at offset %#x: compressed length %d runs past the grain or the file", disk.ErrFormat, g, host, n)
		}
		if end := grainMarkerSize + n; end > int64(len(first)) {
			if err := blockio.ReadFull(im.r, raw[len(first):end], host+int64(len(first))); err != nil {
				return fmt.Errorf("vmdk: reading grain %d at offset %#x: %w", g, host, err)
			}
		}
		data = raw[grainMarkerSize : grainMarkerSize+n]
	} else if err := blockio.ReadFull(im.r, raw, host); err != nil {
		return fmt.Errorf("vmdk: reading grain %d at offset %#x: %w", g, host, err)
	}
	op := im.outs.Get().(*[]byte)
	defer im.outs.Put(op)
	out, err := inflate.DecodeZlib(*op, data)
	if err != nil {
		return fmt.Errorf("vmdk: %w: grain %d at offset %#x: %w", disk.ErrFormat, g, host, err)
	}
	if in+int64(len(buf)) > int64(out) {
		return fmt.Errorf("vmdk: %w: grain %d at offset %#x inflates to %d bytes, short of the %d read", disk.ErrFormat, g, host, out, in+int64(len(buf)))
	}
	copy(buf, (*op)[in:])
	return nil
}

// createType names the descriptor's createType, for messages.
func (im *rdImage) createType() string {
	if im.desc == nil {
		return ""
	}
	return strings.TrimSpace(im.desc.keys["createtype"].value)
}
