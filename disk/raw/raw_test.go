package raw

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
)

func TestExtentsFollowHoles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sparse.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 64 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	block := bytes.Repeat([]byte{0xab}, 1<<20)
	for _, off := range []int64{4 << 20, 40 << 20} {
		if _, err := f.WriteAt(block, off); err != nil {
			t.Fatal(err)
		}
	}
	img, err := Open(f, disk.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	exts, err := img.Extents(0, size)
	if err != nil {
		t.Fatal(err)
	}
	var data, pos int64
	for _, e := range exts {
		if e.Offset != pos {
			t.Fatalf("extents not contiguous at %d: %+v", pos, exts)
		}
		pos = e.End()
		if !e.Zero {
			data += e.Length
		}
	}
	if pos != size {
		t.Fatalf("extents cover %d of %d bytes", pos, size)
	}
	// File systems may round data out to their block size, but a sparse
	// 64 MiB file with 2 MiB of data must not report it all as data.
	if data < 2<<20 || data > 8<<20 {
		t.Fatalf("data extents total %d bytes, want about 2 MiB: %+v", data, exts)
	}
	exts, _ = img.Extents(3<<20, 2<<20)
	if len(exts) == 0 || exts[0].Offset != 3<<20 || exts[len(exts)-1].End() != 5<<20 {
		t.Fatalf("window extents %+v", exts)
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
