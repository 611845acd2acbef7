package vdi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
)

// FuzzOpen opens arbitrary bytes as a VDI image and, when that succeeds,
// walks its extents, reads them and checks the image. Nothing may panic,
// hang or allocate without bound, and every error must belong to one of
// disk's classes.
//
// Seeds: qemu-img images in testdata/fuzz/FuzzOpen (cut short: a block is
// a MiB, and what is missing reads as zeros), one of our own, and one with
// zero, duplicate and out-of-range map entries.
func FuzzOpen(f *testing.F) {
	f.Add(seedOurs(f))
	f.Add(seedOddMap())
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		size := int64(len(data))
		if facts, err := Inspect(r, size, disk.Limits{}); err != nil {
			classified(t, "Inspect", err)
		} else if facts.Info.Format != "vdi" {
			t.Fatalf("Inspect accepted an image it did not describe: %+v", facts)
		}
		if _, err := Check(r, size); err != nil {
			classified(t, "Check", err)
		}
		im, err := Open(r, size, disk.OpenOptions{})
		if err != nil {
			classified(t, "Open", err)
			return
		}
		defer im.Close()
		walk(t, im)
	})
}

func classified(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, disk.ErrFormat) && !errors.Is(err, disk.ErrUnsupported) && !errors.Is(err, disk.ErrUnsafe) && !errors.Is(err, disk.ErrLimit) {
		t.Fatalf("%s: error of no class: %v", what, err)
	}
}

// walk checks the extents of the start and the end of the disk (a hostile
// image may claim terabytes) and reads a bounded part of each.
func walk(t *testing.T, im disk.Image) {
	const window = 4 << 20
	size := im.Size()
	starts := []int64{0}
	if size > window {
		starts = append(starts, size-window)
	}
	buf := make([]byte, 64<<10)
	for _, w := range starts {
		n := min(window, size-w)
		ext, err := im.Extents(w, n)
		if err != nil {
			classified(t, "Extents", err)
			continue
		}
		pos := w
		for _, e := range ext {
			if e.Offset != pos || e.Length <= 0 {
				t.Fatalf("Extents(%#x, %#x): extent %+v does not continue at %#x", w, n, e, pos)
			}
			pos = e.End()
			m := min(int64(len(buf)), e.Length)
			got, err := im.ReadAt(buf[:m], e.Offset)
			if err != nil {
				classified(t, "ReadAt", err)
				continue
			}
			if int64(got) != m {
				t.Fatalf("ReadAt(%#x, %d) = %d without error", e.Offset, m, got)
			}
			if e.Zero && !isZero(buf[:m]) {
				t.Fatalf("zero extent %+v reads non-zero bytes", e)
			}
		}
		if pos != w+n {
			t.Fatalf("Extents(%#x, %#x) end at %#x", w, n, pos)
		}
	}
	if size > 0 {
		if _, err := im.ReadAt(buf[:100], size-1); err != io.EOF {
			t.Fatalf("ReadAt across the end: %v, want io.EOF", err)
		}
	}
}

// seedOurs is a 3 MiB dynamic image of ours with a little data in block 1,
// cut short after it.
func seedOurs(f *testing.F) []byte {
	path := f.TempDir() + "/s.vdi"
	out, err := os.Create(path)
	if err != nil {
		f.Fatal(err)
	}
	defer out.Close()
	w, err := Create(out, 3<<20, disk.CreateOptions{})
	if err != nil {
		f.Fatal(err)
	}
	w.WriteAt([]byte("seed data"), 1<<20+7)
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return b[:dataAlign+512]
}

// seedOddMap is a 4-block image whose map has a stored block, a zero
// (discarded) block, an index used twice and one out of range.
func seedOddMap() []byte {
	le := binary.LittleEndian
	b := make([]byte, 0x400+1024)
	le.PutUint32(b[offSignature:], signature)
	le.PutUint32(b[offVersion:], version11)
	le.PutUint32(b[offHeaderSize:], headerSize)
	le.PutUint32(b[offImageType:], typeDynamic)
	le.PutUint32(b[offBmap:], 0x200)
	le.PutUint32(b[offData:], 0x400)
	le.PutUint32(b[offSectorSize:], sectorSize)
	le.PutUint64(b[offDiskSize:], 4<<20-100)
	le.PutUint32(b[offBlockSize:], blockSize)
	le.PutUint32(b[offBlocks:], 4)
	le.PutUint32(b[offAllocated:], 2)
	for i, e := range []uint32{0, discarded, 0, 1000} {
		le.PutUint32(b[0x200+4*i:], e)
	}
	copy(b[0x400:], "block zero")
	return b
}
