package testcorpus

import (
	"archive/zip"
	"bytes"
	"compress/bzip2"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Path returns a readable path for the entry's file: the corpus copy when it
// is kept, otherwise the file unpacked from its compressed original (NAME.bz2
// beside it, or a .zip of the same base name in its folder) into a
// temporary directory of t. A file that would unpack to more than limit
// bytes is not unpacked: ok is false and the caller decides (skip it, or
// raise the limit for a long test).
func Path(t testing.TB, e Entry, limit int64) (path string, ok bool) {
	t.Helper()
	dir := Dir(t)
	path = filepath.Join(dir, e.File)
	if _, err := os.Stat(path); err == nil {
		return path, true
	}
	if e.Size > limit {
		return "", false
	}
	out := filepath.Join(t.TempDir(), filepath.Base(e.File))
	if bz := path + ".bz2"; exists(bz) {
		f, err := os.Open(bz)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		writeSparse(t, out, bzip2.NewReader(f), limit)
		return out, true
	}
	stem := strings.TrimSuffix(filepath.Base(e.File), filepath.Ext(e.File))
	zips, _ := filepath.Glob(filepath.Join(filepath.Dir(path), stem+"*.zip"))
	for _, z := range zips {
		zr, err := zip.OpenReader(z)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		for _, m := range zr.File {
			if filepath.Base(m.Name) != filepath.Base(e.File) {
				continue
			}
			rc, err := m.Open()
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			writeSparse(t, out, rc, limit)
			return out, true
		}
	}
	t.Fatalf("%s is neither in the corpus nor in a .bz2 or .zip beside it", e.File)
	return "", false
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// writeSparse copies r into a new file at path, seeking over blocks of zeros
// so that a mostly empty disk image costs little space; more than limit
// bytes is an error (a decompression bomb in the corpus would be a bug).
func writeSparse(t testing.TB, path string, r io.Reader, limit int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	var total int64
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if total += int64(n); total > limit {
				t.Fatalf("%s: unpacks to more than %d bytes", path, limit)
			}
			var werr error
			if bytes.Equal(buf[:n], zero[:n]) {
				_, werr = f.Seek(int64(n), io.SeekCurrent)
			} else {
				_, werr = f.Write(buf[:n])
			}
			if werr != nil {
				t.Fatal(werr)
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			t.Fatal(fmt.Errorf("unpacking %s: %w", path, err))
		}
	}
	if err := f.Truncate(total); err != nil {
		t.Fatal(err)
	}
}
