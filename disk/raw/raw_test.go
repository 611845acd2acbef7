package raw

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
)

// span is a byte range [off, off+n) of a test file that holds data.
type span struct{ off, n int64 }

// makeImage writes a raw image of size bytes with nonzero data in spans,
// through the package's writer (which keeps the file sparse on every OS),
// and opens it for reading.
func makeImage(t *testing.T, size int64, spans []span) (*os.File, disk.Image) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "image.raw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	w, err := Create(f, size, disk.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range spans {
		if _, err := w.WriteAt(bytes.Repeat([]byte{0xa5}, int(s.n)), s.off); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// Some file systems (ZFS) report dirty data as it will be only after a
	// sync; the layout under test is the one on disk.
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	img, err := Open(f, size, disk.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return f, img
}

// checkContract asserts what disk.Image promises for Extents(off, n): runs
// in order, coalesced, covering exactly [off, end).
func checkContract(t *testing.T, exts []disk.Extent, off, end int64) {
	t.Helper()
	pos := off
	for i, e := range exts {
		if e.Offset != pos || e.Length <= 0 {
			t.Fatalf("extent %d %+v does not continue at %d: %+v", i, e, pos, exts)
		}
		if i > 0 && exts[i-1].Zero == e.Zero {
			t.Fatalf("extents %d and %d not coalesced: %+v", i-1, i, exts)
		}
		pos = e.End()
	}
	if pos != end {
		t.Fatalf("extents cover [%d, %d), want [%d, %d): %+v", off, pos, off, end, exts)
	}
}

// checkDataFound asserts the property whose failure loses data: every byte
// that holds data lies in a data extent, and every zero extent reads as
// zeros.
func checkDataFound(t *testing.T, img disk.Image, exts []disk.Extent, spans []span) {
	t.Helper()
	for _, s := range spans {
		for _, e := range exts {
			if e.Zero && e.Offset < s.off+s.n && s.off < e.End() {
				t.Fatalf("data at [%d, %d) reported as zero extent %+v: %+v", s.off, s.off+s.n, e, exts)
			}
		}
	}
	buf := make([]byte, 1<<20)
	for _, e := range exts {
		if !e.Zero {
			continue
		}
		for off := e.Offset; off < e.End(); off += int64(len(buf)) {
			p := buf[:min(int64(len(buf)), e.End()-off)]
			if _, err := img.ReadAt(p, off); err != nil {
				t.Fatal(err)
			}
			if i := bytes.IndexFunc(p, func(r rune) bool { return r != 0 }); i >= 0 {
				t.Fatalf("zero extent %+v holds data at %d", e, off+int64(i))
			}
		}
	}
}

// TestExtentsFindData: data at known offsets in a sparse file must come back
// as data extents, wherever the file system puts holes.
func TestExtentsFindData(t *testing.T) {
	const size = 16 << 20
	spans := []span{{0, 4 << 10}, {1 << 20, 8 << 10}, {5 << 20, 4 << 10}}
	f, img := makeImage(t, size, spans)
	exts, err := img.Extents(0, size)
	if err != nil {
		t.Fatal(err)
	}
	checkContract(t, exts, 0, size)
	checkDataFound(t, img, exts, spans)

	fs := fileSystem(t, f)
	holes := false
	for _, e := range exts {
		holes = holes || e.Zero
	}
	switch {
	case !holes && fs.holes:
		t.Fatalf("%s reports holes, but Extents found none: %+v", fs.name, exts)
	case !holes:
		t.Logf("file system %q reports no holes here: asserted only that the data is inside data extents: %+v", fs.name, exts)
	case fs.block <= 0:
		t.Logf("file system %q reports holes, block size unknown: asserted only that the data is inside data extents: %+v", fs.name, exts)
	default:
		// Exact layout: the data extents are the spans, rounded out to the
		// block size at most (a file system may allocate finer than the
		// st_blksize it advertises, never coarser).
		t.Logf("file system %q reports holes: asserting the exact layout at %d-byte blocks: %+v", fs.name, fs.block, exts)
		var want extentList
		for _, s := range spans {
			from := s.off / fs.block * fs.block
			to := min((s.off+s.n+fs.block-1)/fs.block*fs.block, size)
			if k := len(want) - 1; k >= 0 && want[k].End() >= from {
				from = want[k].Offset
				want = want[:k]
			}
			want.add(from, to, false)
		}
		for _, e := range exts {
			if e.Zero {
				continue
			}
			inside := false
			for _, w := range want {
				inside = inside || (w.Offset <= e.Offset && e.End() <= w.End())
			}
			if !inside {
				t.Fatalf("data extent %+v is not within the written blocks %+v: %+v", e, want, exts)
			}
		}
	}

	// A window that starts and ends inside holes is clipped to the window.
	exts, err = img.Extents(3<<20, 3<<20)
	if err != nil {
		t.Fatal(err)
	}
	checkContract(t, exts, 3<<20, 6<<20)
	checkDataFound(t, img, exts, []span{{5 << 20, 4 << 10}})
}

// TestExtentsDense: a file without holes, of a size that is no multiple of
// any block size, is one data extent; a dense file must never come back as
// zeros.
func TestExtentsDense(t *testing.T) {
	const size = 1<<20 + 4097
	_, img := makeImage(t, size, []span{{0, size}})
	for _, c := range []struct{ off, n, wantOff, wantLen int64 }{
		{0, size, 0, size},
		{0, 1 << 40, 0, size}, // n is clipped at Size
		{4095, 10, 4095, 10},
		{size - 3, 100, size - 3, 3},
	} {
		exts, err := img.Extents(c.off, c.n)
		if err != nil {
			t.Fatal(err)
		}
		want := []disk.Extent{{Offset: c.wantOff, Length: c.wantLen}}
		if len(exts) != 1 || exts[0] != want[0] {
			t.Fatalf("Extents(%d, %d) = %+v, want %+v", c.off, c.n, exts, want)
		}
	}
	for _, c := range []struct{ off, n int64 }{{size, 1}, {size + 10, 10}, {-1, 10}, {0, 0}} {
		if exts, err := img.Extents(c.off, c.n); err != nil || len(exts) != 0 {
			t.Fatalf("Extents(%d, %d) = %+v, %v; want nothing", c.off, c.n, exts, err)
		}
	}
}

// TestExtentsOneHole: a file that was only extended is one extent: a hole
// where the file system reports holes, else data.
func TestExtentsOneHole(t *testing.T) {
	const size = 16 << 20
	f, img := makeImage(t, size, nil)
	exts, err := img.Extents(0, size)
	if err != nil {
		t.Fatal(err)
	}
	checkContract(t, exts, 0, size)
	checkDataFound(t, img, exts, nil)
	if len(exts) != 1 {
		t.Fatalf("a file that is one hole gave %+v", exts)
	}
	fs := fileSystem(t, f)
	switch {
	case exts[0].Zero:
		t.Logf("file system %q reports the hole", fs.name)
	case fs.holes:
		t.Fatalf("%s reports holes, but Extents found data: %+v", fs.name, exts)
	default:
		t.Logf("file system %q reports no holes here: the hole is data", fs.name)
	}
}

func TestWriterSparseAndResize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := Create(f, 1<<40, disk.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("hello"), 1<<30); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("x"), 1<<40); err == nil {
		t.Fatal("write beyond the virtual size accepted")
	}
	if err := w.Resize(1<<20, false); !errors.Is(err, disk.ErrShrink) {
		t.Fatalf("shrink without permission: %v", err)
	}
	if err := w.Resize(2<<40, false); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	if st.Size() != 2<<40 {
		t.Fatalf("size %d", st.Size())
	}
}

// An image that is not a file (a member of an archive) is all data, and
// ends at the size it was opened with, not at the end of what holds it.
func TestOpenNotAFile(t *testing.T) {
	holder := bytes.NewReader([]byte("0123456789trailer"))
	img, err := Open(io.NewSectionReader(holder, 0, 17), 10, disk.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ext, err := img.Extents(0, 100)
	if err != nil || len(ext) != 1 || ext[0] != (disk.Extent{Offset: 0, Length: 10}) {
		t.Fatalf("Extents = %+v, %v; want one data extent of 10 bytes", ext, err)
	}
	buf := make([]byte, 8)
	if n, err := img.ReadAt(buf, 6); n != 4 || err != io.EOF || string(buf[:n]) != "6789" {
		t.Fatalf("ReadAt across the end = %d %q, %v", n, buf[:n], err)
	}
	if n, err := img.ReadAt(buf, 10); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt at the end = %d, %v", n, err)
	}
}
