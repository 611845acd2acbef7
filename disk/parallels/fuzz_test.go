package parallels

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/testcorpus"
)

// FuzzOpen opens arbitrary bytes as a Parallels image and, when that
// succeeds, walks its extents, reads them and checks the image. Nothing may
// panic, hang or allocate without bound, and every error must belong to
// one of disk's classes.
//
// Seeds: qemu-img images in testdata/fuzz/FuzzOpen (cut short: what is
// missing reads as zeros), a version 1 image with odd catalog entries, and
// the first 8 KiB of the corpus's Parallels images when it is present.
func FuzzOpen(f *testing.F) {
	f.Add(seedV1())
	if dir, ok := testcorpus.Lookup(); ok {
		for _, name := range []string{"parallels-v1", "parallels-v2", "parallels-with-bitmap", "fake.parallels"} {
			if b, err := os.ReadFile(filepath.Join(dir, "qemu", name)); err == nil {
				f.Add(b[:min(len(b), 8<<10)])
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		size := int64(len(data))
		if facts, err := Inspect(r, size, disk.Limits{}); err != nil {
			classified(t, "Inspect", err)
		} else if facts.Info.Format != "parallels" {
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
		for i, e := range ext {
			if e.Offset != pos || e.Length <= 0 {
				t.Fatalf("Extents(%#x, %#x): extent %+v does not continue at %#x", w, n, e, pos)
			}
			pos = e.End()
			if i > 64 {
				continue // enough reads for one input
			}
			m := min(int64(len(buf)), e.Length)
			got, err := im.ReadAt(buf[:m], e.Offset)
			if err != nil {
				classified(t, "ReadAt", err)
				continue
			}
			if int64(got) != m {
				t.Fatalf("ReadAt(%#x, %d) = %d without error", e.Offset, m, got)
			}
			if e.Zero && !bytes.Equal(buf[:m], make([]byte, m)) {
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

// seedV1 is a "WithoutFreeSpace" image of 4 clusters of 8 sectors whose
// catalog has a stored cluster, an unaligned one, one beyond the file and
// an unallocated one, with the in-use flag set.
func seedV1() []byte {
	le := binary.LittleEndian
	b := make([]byte, 4096+1024)
	copy(b, magicV1)
	le.PutUint32(b[16:], version)
	le.PutUint32(b[28:], 8)
	le.PutUint32(b[32:], 4)
	le.PutUint64(b[36:], 4*8-3)
	le.PutUint32(b[44:], inUseMagic)
	for i, e := range []uint32{8, 9, 1 << 20, 0} {
		le.PutUint32(b[headerSize+4*i:], e)
	}
	copy(b[4096:], "cluster zero")
	return b
}
