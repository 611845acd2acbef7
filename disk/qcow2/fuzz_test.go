package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/flate"
	"github.com/ucphhpc/gen-vm-image-go/disk"
)

// FuzzOpen opens arbitrary bytes as a qcow2 image and, when that succeeds,
// walks its extents and reads them. Nothing may panic, hang or allocate
// without bound, and every error must belong to one of disk's classes.
//
// Seeds: tiny qemu-img images in testdata/fuzz/FuzzOpen, a hand-made image
// with extended L2 entries, and the qcow2 files of ../shared/corpus when
// it is present.
func FuzzOpen(f *testing.F) {
	f.Add(rdSeedExtendedL2())
	f.Add(cmpSeed(f, "zlib"))
	f.Add(cmpSeed(f, "zstd"))
	for _, b := range rdCorpusSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		size := int64(len(data))
		if facts, err := Inspect(r, size, disk.Limits{}); err != nil {
			rdFuzzClassified(t, "Inspect", err)
		} else if facts.Info.Format != "qcow2" {
			t.Fatalf("Inspect accepted an image it did not describe: %+v", facts)
		}
		im, err := Open(r, size, disk.OpenOptions{})
		if err != nil {
			rdFuzzClassified(t, "Open", err)
			return
		}
		defer im.Close()
		_ = im.(disk.Describer).Info()
		rdFuzzWalk(t, im)
	})
}

func rdFuzzClassified(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, disk.ErrFormat) && !errors.Is(err, disk.ErrUnsupported) && !errors.Is(err, disk.ErrUnsafe) && !errors.Is(err, disk.ErrLimit) {
		t.Fatalf("%s: error of no class: %v", what, err)
	}
}

// rdFuzzWalk checks the extents of a few windows (the start and the end of
// the disk: a hostile image may claim petabytes) and reads a bounded part
// of each.
func rdFuzzWalk(t *testing.T, im disk.Image) {
	const window = 4 << 20
	size := im.Size()
	var starts []int64
	for w := int64(0); w < min(size, 2*window); w += window {
		starts = append(starts, w)
	}
	if size > 2*window {
		starts = append(starts, size-window)
	}
	buf := make([]byte, 64<<10)
	budget := 4 << 20 // bytes read per input
	for _, w := range starts {
		n := min(window, size-w)
		ext, err := im.Extents(w, n)
		if err != nil {
			rdFuzzClassified(t, "Extents", err)
			continue
		}
		pos := w
		for _, e := range ext {
			if e.Offset != pos || e.Length <= 0 {
				t.Fatalf("Extents(%#x, %#x): extent %+v does not continue at %#x", w, n, e, pos)
			}
			pos = e.End()
			if budget <= 0 {
				continue
			}
			// The start and the end of each extent.
			for _, o := range []int64{e.Offset, max(e.Offset, e.End()-int64(len(buf)))} {
				m := min(int64(len(buf)), e.End()-o)
				budget -= int(m)
				got, err := im.ReadAt(buf[:m], o)
				if err != nil {
					rdFuzzClassified(t, "ReadAt", err)
					break
				}
				if int64(got) != m {
					t.Fatalf("ReadAt(%#x, %d) = %d without error", o, m, got)
				}
				if e.Zero && bytes.ContainsFunc(buf[:m], func(r rune) bool { return r != 0 }) {
					t.Fatalf("Zero extent %+v reads non-zero bytes", e)
				}
			}
		}
		if pos != w+n {
			t.Fatalf("Extents(%#x, %#x) end at %#x", w, n, pos)
		}
	}
	// Reads at the end and past it.
	if size > 0 {
		if _, err := im.ReadAt(buf[:100], size-1); err != io.EOF {
			if err == nil {
				t.Fatal("ReadAt across the end: no io.EOF")
			}
			rdFuzzClassified(t, "ReadAt", err)
		}
	}
}

// rdSeedExtendedL2 builds a small image with extended L2 entries: 16 KiB
// clusters of 32 subclusters of 512 bytes; cluster 0 has subclusters 0, 1
// and 3 allocated and 5 zero, cluster 1 reads as zeros by its bitmap,
// cluster 2 is deflate-compressed, cluster 3 unallocated.
func rdSeedExtendedL2() []byte {
	const cs = 16 << 10
	be := binary.BigEndian
	var deflated bytes.Buffer
	w, _ := flate.NewWriter(&deflated, flate.BestCompression)
	w.Write(bytes.Repeat([]byte("extended L2 seed "), cs/17+1)[:cs])
	w.Close()
	comp := deflated.Bytes()

	const dataHost, compHost = 3 * cs, 3*cs + 2048
	img := make([]byte, compHost+len(comp))
	be.PutUint32(img[0:], Magic)
	be.PutUint32(img[4:], 3)
	be.PutUint32(img[20:], 14)
	be.PutUint64(img[24:], 4*cs)
	be.PutUint32(img[36:], 1)  // L1 entries
	be.PutUint64(img[40:], cs) // L1 offset
	be.PutUint64(img[48:], cs) // refcount table (shares the L1 cluster: the reader ignores it)
	be.PutUint32(img[56:], 1)  // refcount table clusters
	be.PutUint64(img[72:], IncompatExtendedL2)
	be.PutUint32(img[96:], 4)    // refcount order
	be.PutUint32(img[100:], 112) // header length
	be.PutUint64(img[cs:], EntryCopied|2*cs)
	l2 := img[2*cs:]
	be.PutUint64(l2[0:], EntryCopied|dataHost)
	be.PutUint64(l2[8:], 0b1011|(1<<5)<<32)
	be.PutUint64(l2[24:], 0xffffffff<<32)
	sectors := uint64((compHost%512+len(comp)+511)/512 - 1)
	be.PutUint64(l2[32:], EntryCompressed|sectors<<56|compHost)
	for i := dataHost; i < dataHost+2048; i++ {
		img[i] = byte(i * 13)
	}
	copy(img[compHost:], comp)
	return img
}

// rdCorpusSeeds returns the small (<= 64 KiB) qcow2 files of ../shared/corpus, or
// nothing when it is absent (never skipping the fuzz target).
func rdCorpusSeeds() [][]byte {
	dir := os.Getenv("GVI_CORPUS")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "corpus")
	}
	var seeds [][]byte
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, ".bz2") || strings.HasSuffix(path, ".zip") {
			return nil
		}
		// Larger inputs slow the fuzzer down more than they teach it.
		if fi, err := d.Info(); err != nil || fi.Size() > 64<<10 {
			return nil
		}
		b, err := os.ReadFile(path)
		if err == nil && len(b) >= 4 && binary.BigEndian.Uint32(b) == Magic {
			seeds = append(seeds, b)
		}
		return nil
	})
	return seeds
}
