package vhdx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
	"github.com/ucphhpc/gen-vm-image-go/internal/testcorpus"
)

// FuzzOpen opens images made of a base image and fuzzed bytes and, when
// that succeeds, checks them and walks their extents and data. Nothing may
// panic, hang or allocate without bound, and every error must belong to
// one of disk's classes.
//
// A VHDX is megabytes of mostly nothing around a few structures, each
// under a CRC-32C: random bytes would never get past the first checksum.
// So the input's first byte picks a base image (ours, qemu-img's, the
// corpus's Hyper-V image and its image with a pending log) and a
// structure (a header, the region table, the metadata, the BAT, the
// log); the rest of the input overwrites the start of that structure,
// whose checksum is then recomputed unless the second byte's low bit is
// set. Inputs whose first byte is 0xff are a whole image.
func FuzzOpen(f *testing.F) {
	bases := fuzzBases(f)
	for b := range bases {
		for s := range fuzzTargets {
			f.Add([]byte{byte(b<<4 | s), 0})
			f.Add([]byte{byte(b<<4 | s), 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		}
	}
	f.Add([]byte("\xffvhdxfile"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var r io.ReaderAt
		var size int64
		if len(data) < 2 || data[0] == 0xff {
			r, size = bytes.NewReader(data), int64(len(data))
		} else {
			base := bases[int(data[0]>>4)%len(bases)]
			p, ok := fuzzTargets[int(data[0]&15)%len(fuzzTargets)](base)
			if !ok {
				return
			}
			region := bytes.Clone(base[p.off : p.off+p.n])
			copy(region, data[2:])
			if data[1]&1 == 0 && p.crcAt >= 0 {
				fixCRC(region, p.crcAt)
			}
			r, size = &patched{base: base, off: p.off, patch: region}, int64(len(base))
		}
		if _, err := Inspect(r, size, disk.Limits{}); err != nil {
			fuzzClassified(t, "Inspect", err)
		}
		if _, err := Check(r, size); err != nil {
			fuzzClassified(t, "Check", err)
		}
		im, err := Open(r, size, disk.OpenOptions{})
		if err != nil {
			fuzzClassified(t, "Open", err)
			return
		}
		defer im.Close()
		fuzzWalk(t, im)
	})
}

// fuzzTarget locates a structure of a base image: n bytes at off, with a
// CRC-32C at crcAt (-1: none).
type fuzzTarget struct {
	off, n int
	crcAt  int
}

var fuzzTargets = []func(b []byte) (fuzzTarget, bool){
	func([]byte) (fuzzTarget, bool) { return fuzzTarget{header1, headerSize, 4}, true },
	func([]byte) (fuzzTarget, bool) { return fuzzTarget{header2, headerSize, 4}, true },
	func([]byte) (fuzzTarget, bool) { return fuzzTarget{regionTable1, regionTableSize, 4}, true },
	func(b []byte) (fuzzTarget, bool) { // the metadata table and items
		off, ok := regionOffset(b, regionMetadata)
		return fuzzTarget{off, metaTableSize + 4096, -1}, ok && off+metaTableSize+4096 <= len(b)
	},
	func(b []byte) (fuzzTarget, bool) { // the BAT
		off, ok := regionOffset(b, regionBAT)
		return fuzzTarget{off, 64 << 10, -1}, ok && off+64<<10 <= len(b)
	},
	func(b []byte) (fuzzTarget, bool) { // the first log entry
		off := int(binary.LittleEndian.Uint64(b[header1+72:]))
		return fuzzTarget{off, 2 * logSector, 4}, off > 0 && off+2*logSector <= len(b)
	},
}

func regionOffset(b []byte, id [16]byte) (int, bool) {
	rt := b[regionTable1 : regionTable1+regionTableSize]
	for i := range min(int(binary.LittleEndian.Uint32(rt[8:])), 100) {
		e := rt[16+32*i:]
		if [16]byte(e[:16]) == id {
			off := binary.LittleEndian.Uint64(e[16:])
			return int(off), off < uint64(len(b))
		}
	}
	return 0, false
}

// fuzzBases are the base images: ours (dynamic, with a pending log),
// qemu-img's and the corpus's, when they can be had.
func fuzzBases(f *testing.F) [][]byte {
	var bases [][]byte
	dir := f.TempDir()
	out, err := os.CreateTemp(dir, "base")
	if err != nil {
		f.Fatal(err)
	}
	defer out.Close()
	w, err := Create(out, 9<<20+512, disk.CreateOptions{Options: map[string]string{"block_size": "1M"}})
	if err != nil {
		f.Fatal(err)
	}
	w.WriteAt(pattern(0, 2<<20), 512)
	w.WriteAt(pattern(8<<20, 4096), 8<<20)
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	ours, err := os.ReadFile(out.Name())
	if err != nil {
		f.Fatal(err)
	}
	bases = append(bases, ours, withLog(bytes.Clone(ours), func([]byte) {}))
	for _, b := range oracle.MakeImages([]oracle.ImageSpec{{Name: "q.vhdx", Args: []string{"-f", "vhdx", "-o", "block_size=1M"}}}) {
		bases = append(bases, b)
	}
	if _, ok := testcorpus.Lookup(); ok {
		for _, e := range testcorpus.Manifest(f) {
			if !strings.HasSuffix(e.File, ".vhdx") || e.Size > 40<<20 {
				continue
			}
			if path, ok := testcorpus.Path(f, e, 40<<20); ok {
				if b, err := os.ReadFile(path); err == nil {
					bases = append(bases, b)
				}
			}
		}
	}
	return bases[:min(len(bases), 16)]
}

// patched reads base with patch over it at off, without copying base.
type patched struct {
	base  []byte
	off   int
	patch []byte
}

func (p *patched) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(p.base)) {
		return 0, io.EOF
	}
	n := copy(b, p.base[off:])
	lo, hi := max(off, int64(p.off)), min(off+int64(n), int64(p.off+len(p.patch)))
	if lo < hi {
		copy(b[lo-off:hi-off], p.patch[lo-int64(p.off):])
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

func fuzzClassified(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, disk.ErrFormat) && !errors.Is(err, disk.ErrUnsupported) && !errors.Is(err, disk.ErrUnsafe) && !errors.Is(err, disk.ErrLimit) {
		t.Fatalf("%s: error of no class: %v", what, err)
	}
}

// fuzzWalk checks the extents of the start and the end of the disk and
// reads a bounded part of them.
func fuzzWalk(t *testing.T, im disk.Image) {
	const window = 4 << 20
	size := im.Size()
	buf := make([]byte, 64<<10)
	for _, w := range []int64{0, max(0, size-window)} {
		n := min(window, size-w)
		ext, err := im.Extents(w, n)
		if err != nil {
			fuzzClassified(t, "Extents", err)
			continue
		}
		pos := w
		for _, e := range ext {
			if e.Offset != pos || e.Length <= 0 {
				t.Fatalf("Extents(%#x, %#x): extent %+v does not continue at %#x", w, n, e, pos)
			}
			pos = e.End()
		}
		if pos != w+n {
			t.Fatalf("Extents(%#x, %#x) end at %#x", w, n, pos)
		}
		for off := w; off < w+n; off += 1 << 20 {
			k := min(int64(len(buf)), w+n-off)
			if _, err := im.ReadAt(buf[:k], off); err != nil && err != io.EOF {
				fuzzClassified(t, "ReadAt", errors.Unwrap(err))
			}
		}
	}
}
