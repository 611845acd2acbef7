package vmdk

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
)

// pattern returns n bytes with data, zeros and compressible text mixed
// at odd boundaries, the same for the same seed.
func pattern(n int64, seed uint64) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, 1))
	for off := int64(0); off < n; {
		run := min(n-off, int64(1+rng.IntN(200_000)))
		switch rng.IntN(3) {
		case 0: // zeros
		case 1:
			for i := off; i < off+run; i++ {
				b[i] = byte(rng.Uint32())
			}
		default:
			copy(b[off:off+run], bytes.Repeat([]byte("gen-vm-image vmdk grain "), int(run/24+1)))
		}
		off += run
	}
	return b
}

// writeRaw writes b as a raw file in dir.
func writeRaw(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// openFile opens a VMDK file with Open.
func openFile(t testing.TB, path string) (disk.Image, func()) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	im, err := Open(f, st.Size(), disk.OpenOptions{})
	if err != nil {
		f.Close()
		t.Fatalf("Open %s: %v", path, err)
	}
	return im, func() { im.Close(); f.Close() }
}

// digest reads the whole virtual disk of im in odd-sized pieces and
// returns its SHA-256, checking that Extents marks only zeros as zero.
func digest(t testing.TB, im disk.Image) string {
	t.Helper()
	h := sha256.New()
	buf := make([]byte, 300_001)
	for off := int64(0); off < im.Size(); {
		n := min(int64(len(buf)), im.Size()-off)
		if _, err := im.ReadAt(buf[:n], off); err != nil && err != io.EOF {
			t.Fatalf("ReadAt(%d, %d): %v", off, n, err)
		}
		h.Write(buf[:n])
		off += n
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// fileSum is the SHA-256 of a file, streamed (raw conversions of sparse
// multi-GiB corpus images).
func fileSum(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func openRaw(t testing.TB, path string) (*os.File, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return f, st.Size()
}

// sameAsRaw compares im with the raw file at path (which qemu-img wrote
// sparse) without reading the holes of either: every data extent of im
// and every data region of the file is compared byte for byte, so what is
// left is a hole in the file and a zero extent of im, zeros both.
func sameAsRaw(t testing.TB, im disk.Image, path string) {
	t.Helper()
	f, size := openRaw(t, path)
	defer f.Close()
	if size != im.Size() {
		t.Fatalf("virtual size %d, raw file %d bytes", im.Size(), size)
	}
	compare := func(off, n int64) {
		a, b := make([]byte, 1<<20), make([]byte, 1<<20)
		for end := off + n; off < end; {
			k := min(int64(len(a)), end-off)
			if _, err := im.ReadAt(a[:k], off); err != nil && err != io.EOF {
				t.Fatalf("ReadAt(%d, %d): %v", off, k, err)
			}
			if _, err := f.ReadAt(b[:k], off); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if !bytes.Equal(a[:k], b[:k]) {
				t.Fatalf("content differs in [%d, %d)", off, off+k)
			}
			off += k
		}
	}
	exts, err := im.Extents(0, im.Size())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range exts {
		if !e.Zero {
			compare(e.Offset, e.Length)
		}
	}
	const seekData, seekHole = 3, 4
	for off := int64(0); off < size; {
		d, err := f.Seek(off, seekData)
		if err != nil {
			break // no more data
		}
		h, err := f.Seek(d, seekHole)
		if err != nil {
			t.Fatal(err)
		}
		compare(d, h-d)
		off = h
	}
}
