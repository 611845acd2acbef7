package qed

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
	"github.com/ucphhpc/gen-vm-image-go/internal/testcorpus"
)

// FuzzOpen opens arbitrary bytes as a QED image and, when that succeeds,
// walks its extents, reads them and checks the image. Nothing may panic,
// hang or allocate without bound, and every error must belong to one of
// disk's classes.
//
// Seeds: small images in testdata/fuzz/FuzzOpen, a hand-made image with
// data, zero and unallocated clusters, tiny qemu-img images of several
// geometries when qemu-img is present, and the QED files of
// ../shared/corpus when it has any.
func FuzzOpen(f *testing.F) {
	f.Add(seedImage())
	for _, b := range oracle.MakeImages([]oracle.ImageSpec{
		{Name: "default.qed", Args: []string{"-f", "qed"}},
		{Name: "small.qed", Args: []string{"-f", "qed", "-o", "cluster_size=4K,table_size=2"}},
		{Name: "odd.qed", Args: []string{"-f", "qed", "-o", "cluster_size=8K,table_size=16"}},
		{Name: "backing.qed", Args: []string{"-f", "qed", "-b", "default.qed", "-F", "qed"}},
	}) {
		f.Add(b)
	}
	if dir, ok := testcorpus.Lookup(); ok {
		for _, b := range testcorpus.Files(dir, func(name string) bool { return !strings.HasSuffix(name, ".bz2") && !strings.HasSuffix(name, ".zip") }) {
			if len(b) <= 1<<20 && Sniff(bytes.NewReader(b), int64(len(b))) {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		size := int64(len(data))
		if facts, err := Inspect(r, size, disk.Limits{}); err != nil {
			classified(t, "Inspect", err)
		} else if facts.Info.Format != "qed" {
			t.Fatalf("Inspect accepted an image it did not describe: %+v", facts)
		}
		if rep, err := Check(r, size); err != nil {
			classified(t, "Check", err)
		} else if rep.Format != "qed" {
			t.Fatalf("Check report without a format: %+v", rep)
		}
		im, err := Open(r, size, disk.OpenOptions{})
		if err != nil {
			classified(t, "Open", err)
			return
		}
		defer im.Close()
		_ = im.(disk.Describer).Info()
		walk(t, im)
	})
}

func classified(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, disk.ErrFormat) && !errors.Is(err, disk.ErrUnsupported) && !errors.Is(err, disk.ErrUnsafe) && !errors.Is(err, disk.ErrLimit) {
		t.Fatalf("%s: error of no class: %v", what, err)
	}
}

// walk checks the extents of a few windows (the start and the end of the
// disk: a hostile image may claim terabytes) and reads a bounded part of
// each.
func walk(t *testing.T, im disk.Image) {
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
	budget := 4 << 20
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
			if budget <= 0 {
				continue
			}
			for _, o := range []int64{e.Offset, max(e.Offset, e.End()-int64(len(buf)))} {
				m := min(int64(len(buf)), e.End()-o)
				budget -= int(m)
				got, err := im.ReadAt(buf[:m], o)
				if err != nil {
					classified(t, "ReadAt", err)
					break
				}
				if int64(got) != m {
					t.Fatalf("ReadAt(%#x, %d) = %d without error", o, m, got)
				}
				if e.Zero && !bytes.Equal(buf[:m], make([]byte, m)) {
					t.Fatalf("Zero extent %+v reads non-zero bytes", e)
				}
			}
		}
		if pos != w+n {
			t.Fatalf("Extents(%#x, %#x) end at %#x", w, n, pos)
		}
	}
	if size > 0 {
		if _, err := im.ReadAt(buf[:100], size-1); err != io.EOF {
			if err == nil {
				t.Fatal("ReadAt across the end: no io.EOF")
			}
			classified(t, "ReadAt", err)
		}
	}
}

// seedImage is a 4 KiB-cluster image with 2-cluster tables (5 clusters of
// virtual disk in use): cluster 0 data, 1 zero, 2 unallocated, 3 data
// stored before cluster 0's, and an L1 entry beyond the first pointing
// nowhere useful for the fuzzer to mutate.
func seedImage() []byte {
	const cs = 4096
	le := binary.LittleEndian
	h := header{clusterSize: cs, tableSize: 2, headerSize: 1, l1Offset: cs, imageSize: 16 << 20}
	img := make([]byte, 7*cs)
	copy(img, h.marshal())
	le.PutUint64(img[cs:], 3*cs) // L1[0] -> L2 at cluster 3 (2 clusters)
	l2 := img[3*cs:]
	le.PutUint64(l2[0:], 6*cs)
	le.PutUint64(l2[8:], entryZero)
	le.PutUint64(l2[24:], 5*cs)
	for i := 5 * cs; i < 7*cs; i++ {
		img[i] = byte(i * 7)
	}
	return img
}

// TestFuzzSeedsValid: the hand-made seed is a valid image qemu-img reads
// as we do, so that the fuzzer starts from something real.
func TestFuzzSeedsValid(t *testing.T) {
	oracle.QemuImg(t)
	path := filepath.Join(t.TempDir(), "seed.qed")
	if err := os.WriteFile(path, seedImage(), 0o644); err != nil {
		t.Fatal(err)
	}
	assertReadsAsQemu(t, path)
	q, _ := assertCheckAgrees(t, path)
	if q.Corruptions != 0 || q.CheckErrors != 0 || q.Leaks != 0 {
		t.Fatalf("qemu-img check: %+v", q)
	}
}
