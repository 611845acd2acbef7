package vhdx

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/libyal"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// piece is a write of a test image: n bytes of a pattern (or zeros) at off.
type piece struct {
	off, n int64
	zero   bool
}

// testImage is a VHDX written beside a raw file that receives the same
// writes, so that qemu-img compare and libvhdi can tell whether the VHDX
// holds what it should.
type testImage struct {
	path, raw string
	size      int64 // after rounding
}

func pattern(off, n int64) []byte {
	b := make([]byte, n)
	for i := range b {
		v := uint64(off + int64(i))
		b[i] = byte(v>>9) ^ byte(v*7) | 1
	}
	return b
}

func writeImage(t *testing.T, dir, name string, size int64, opts map[string]string, pieces []piece) testImage {
	t.Helper()
	ti := testImage{path: filepath.Join(dir, name+".vhdx"), raw: filepath.Join(dir, name+".raw"), size: (size + 511) &^ 511}
	f, err := os.Create(ti.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	raw, err := os.Create(ti.raw)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := raw.Truncate(ti.size); err != nil {
		t.Fatal(err)
	}
	w, err := Create(f, size, disk.CreateOptions{Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pieces {
		b := make([]byte, p.n)
		if !p.zero {
			b = pattern(p.off, p.n)
		}
		if n, err := w.WriteAt(b, p.off); err != nil || n != len(b) {
			t.Fatalf("WriteAt(%d at %d) = %d, %v", len(b), p.off, n, err)
		}
		if _, err := raw.WriteAt(b, p.off); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return ti
}

// writeCases are the images the writer tests make: odd sizes, zero and
// unallocated runs, every option.
var writeCases = []struct {
	name   string
	size   int64
	opts   map[string]string
	pieces []piece
	small  bool // small enough for qemu-img compare (qemu's vhdx has no block status: it reads everything)
}{
	{"1B", 1, nil, []piece{{0, 1, false}}, true},
	{"511B", 511, nil, []piece{{0, 511, false}}, true},
	{"empty", 0, nil, nil, true},
	{"odd-dynamic", 20<<20 + 12345, map[string]string{"block_size": "1M"},
		[]piece{{0, 3 << 20, false}, {3 << 20, 2 << 20, true}, {7<<20 + 512, 1 << 20, false}, {20 << 20, 12345, false}}, true},
	{"odd-fixed", 9<<20 + 1000, map[string]string{"subformat": "fixed", "block_size": "2M"},
		[]piece{{4096, 8192, false}, {2 << 20, 1 << 20, true}, {9 << 20, 1000, false}}, true},
	{"log-4M-default-block", 50 << 20, map[string]string{"log_size": "4M"},
		[]piece{{1 << 20, 5 << 20, false}, {40 << 20, 1 << 20, true}, {49 << 20, 1 << 20, false}}, true},
	// A sector bitmap entry follows every 4 GiB of payload entries.
	{"two-chunks", 4<<30 + 8<<20, map[string]string{"block_size": "1M"},
		[]piece{{0, 1 << 20, false}, {4<<30 - 1<<20, 2 << 20, false}, {4<<30 + 7<<20, 1 << 20, false}}, false},
	{"2TiB-sparse", 2 << 40, nil,
		[]piece{{0, 1 << 20, false}, {1 << 40, 4096, false}, {2<<40 - 4096, 4096, false}}, false},
}

// TestWriteJudged: qemu-img checks what we write, finds it identical to
// its source, and reports the geometry we chose; libvhdi reads the same
// bytes; so do we.
func TestWriteJudged(t *testing.T) {
	oracle.QemuImg(t)
	for _, tc := range writeCases {
		t.Run(tc.name, func(t *testing.T) {
			ti := writeImage(t, t.TempDir(), "out", tc.size, tc.opts, tc.pieces)
			r, code := oracle.Check(t, ti.path, "vhdx")
			if code != 0 || r.CheckErrors != 0 || r.Corruptions != 0 {
				out, _, _ := oracle.Run(t, "check", "-f", "vhdx", ti.path)
				t.Fatalf("qemu-img check: exit %d %+v\n%s", code, r, out)
			}
			info := oracle.ImageInfo(t, ti.path)
			if info.Format != "vhdx" || info.VirtualSize != ti.size || info.DirtyFlag {
				t.Fatalf("qemu-img info: %+v, want vhdx of %d bytes", info, ti.size)
			}
			if tc.small {
				oracle.AssertSame(t, ti.raw, "raw", ti.path, "vhdx")
			} else {
				// qemu's vhdx driver has no block status: compare would
				// read all 2 TiB. Compare the written ranges instead.
				qemuReadsPieces(t, ti, tc.pieces)
			}
			ours := ourInfo(t, ti.path)
			if ours.ClusterSize != info.ClusterSize || ours.VirtualSize != info.VirtualSize {
				t.Errorf("our info %+v, qemu-img's %+v", ours, info)
			}
			assertReadsAsRaw(t, ti.path, ti.raw, tc.pieces)
			// libvhdi refuses a BAT of no entries (qemu-img's empty
			// VHDX too), and reading 4 GiB through Python takes long.
			if ti.size > 0 && ti.size <= 64<<20 {
				size, sum := libyal.Read(t, "vhdi", ti.path)
				if want := fileSHA(t, ti.raw); size != ti.size || sum != want {
					t.Errorf("libvhdi reads %d bytes, sha256 %s; want %d, %s", size, sum, ti.size, want)
				}
			}
			ourCheck(t, ti.path)
		})
	}
}

func ourInfo(t *testing.T, path string) disk.Info {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	facts, err := Inspect(f, st.Size(), disk.Limits{})
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	return facts.Info
}

func ourCheck(t *testing.T, path string) disk.CheckReport {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	r, err := Check(f, st.Size())
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if !r.OK() {
		t.Fatalf("Check: %+v", r)
	}
	return r
}

func fileSHA(t *testing.T, path string) string {
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

// assertReadsAsRaw reads the image with our reader: every byte of a small
// image, the written ranges and the extents of a large one.
func assertReadsAsRaw(t *testing.T, path, rawPath string, pieces []piece) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	raw, err := os.Open(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	st, _ := f.Stat()
	im, err := Open(f, st.Size(), disk.OpenOptions{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer im.Close()
	rst, _ := raw.Stat()
	if im.Size() != rst.Size() {
		t.Fatalf("size %d, want %d", im.Size(), rst.Size())
	}
	compare := func(off, n int64) {
		got, want := make([]byte, n), make([]byte, n)
		if _, err := im.ReadAt(got, off); err != nil && err != io.EOF {
			t.Fatalf("ReadAt(%d, %d): %v", n, off, err)
		}
		if _, err := raw.ReadAt(want, off); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("bytes at %d (%d) differ", off, n)
		}
	}
	ext, err := im.Extents(0, im.Size())
	if err != nil {
		t.Fatal(err)
	}
	var pos int64
	for _, e := range ext {
		if e.Offset != pos {
			t.Fatalf("extents %+v do not cover the disk", ext)
		}
		pos = e.End()
	}
	if pos != im.Size() {
		t.Fatalf("extents %+v end at %d, not %d", ext, pos, im.Size())
	}
	if im.Size() <= 512<<20 {
		compare(0, im.Size())
		return
	}
	for _, p := range pieces {
		compare(p.off, p.n)
	}
}

// TestDeterministic: the same writes give the same bytes; other data
// gives other GUIDs.
func TestDeterministic(t *testing.T) {
	dir := t.TempDir()
	pieces := []piece{{0, 3 << 20, false}, {5 << 20, 1 << 20, false}}
	var files [][]byte
	for _, name := range []string{"a", "b"} {
		ti := writeImage(t, dir, name, 20<<20, map[string]string{"block_size": "1M"}, pieces)
		b, err := os.ReadFile(ti.path)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, b)
	}
	if !bytes.Equal(files[0], files[1]) {
		t.Fatal("two writes of the same image differ")
	}
	other := writeImage(t, dir, "c", 20<<20, map[string]string{"block_size": "1M"}, pieces[:1])
	b, _ := os.ReadFile(other.path)
	if bytes.Equal(b[header1+16:header1+48], files[0][header1+16:header1+48]) {
		t.Fatal("images with different data have the same write GUIDs")
	}
}

// TestOptions: the options are validated, and the errors list the valid
// ones.
func TestOptions(t *testing.T) {
	f, _ := disk.Lookup("vhdx")
	for _, tt := range []struct {
		opts map[string]string
		want string
	}{
		{map[string]string{"block_size": "3M"}, "power of two"},
		{map[string]string{"block_size": "512M"}, "power of two"},
		{map[string]string{"log_size": "1500K"}, "multiple of 1M"},
		{map[string]string{"subformat": "streamOptimized"}, "dynamic, fixed"},
		{map[string]string{"cluster_size": "64K"}, "subformat, block_size, log_size"},
	} {
		err := f.CheckOptions(disk.CreateOptions{Options: tt.opts})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want an error saying %q", tt.opts, err, tt.want)
		}
	}
	if err := f.CheckOptions(disk.CreateOptions{Options: map[string]string{"block_size": "256M", "log_size": "8M", "subformat": "fixed"}}); err != nil {
		t.Error(err)
	}
}

// TestResize: growing past the reserved BAT moves it to the end; shrinking
// zeroes what lies past the new end.
func TestResize(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	for _, fixed := range []bool{false, true} {
		name := fmt.Sprintf("fixed-%v", fixed)
		path := filepath.Join(dir, name+".vhdx")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		opts := map[string]string{"block_size": "1M"}
		if fixed {
			opts["subformat"] = "fixed"
		}
		w, err := Create(f, 3<<20, disk.CreateOptions{Options: opts})
		if err != nil {
			t.Fatal(err)
		}
		w.WriteAt(pattern(0, 3<<20), 0)
		if err := w.Resize(2<<20+512, false); err == nil {
			t.Fatal("shrink without allowShrink succeeded")
		}
		if err := w.Resize(2<<20+512, true); err != nil {
			t.Fatal(err)
		}
		if err := w.Resize(200<<30, false); err != nil { // 200 GiB: the BAT outgrows its MiB
			t.Fatal(err)
		}
		w.WriteAt(pattern(100<<30, 4096), 100<<30)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		raw := filepath.Join(dir, name+".raw")
		rf, _ := os.Create(raw)
		rf.Truncate(200 << 30)
		rf.WriteAt(pattern(0, 2<<20+512), 0)
		rf.WriteAt(pattern(100<<30, 4096), 100<<30)
		rf.Close()
		if r, code := oracle.Check(t, path, "vhdx"); code != 0 || r.CheckErrors != 0 {
			t.Fatalf("qemu-img check: %d %+v", code, r)
		}
		qemuReadsPieces(t, testImage{path: path, raw: raw, size: 200 << 30},
			[]piece{{0, 3 << 20, false}, {100 << 30, 4096, false}, {200<<30 - 1<<20, 1 << 20, true}})
		ourCheck(t, path)
	}
}

// qemuReadsPieces has qemu-img dd read the written ranges (4 KiB-aligned)
// and compares them with the raw file.
func qemuReadsPieces(t *testing.T, ti testImage, pieces []piece) {
	t.Helper()
	raw, err := os.Open(ti.raw)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for i, p := range pieces {
		out := filepath.Join(filepath.Dir(ti.path), fmt.Sprintf("piece%d", i))
		oracle.MustRun(t, "convert", "--image-opts", "-O", "raw",
			fmt.Sprintf("driver=raw,offset=%d,size=%d,file.driver=vhdx,file.file.filename=%s", p.off, p.n, ti.path), out)
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]byte, len(got))
		if _, err := raw.ReadAt(want, p.off); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if len(got) != int(p.n) || !bytes.Equal(got, want) {
			t.Fatalf("qemu-img reads %d bytes at %d that differ from what was written", len(got), p.off)
		}
	}
}
