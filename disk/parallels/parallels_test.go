package parallels

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/convert"
	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/disk/raw"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
	"github.com/ucphhpc/gen-vm-image-go/internal/testcorpus"
)

const mib = 1 << 20

// piece is data written at a virtual offset of a test disk.
type piece struct {
	off  int64
	data []byte
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed | 1
	}
	return b
}

// testPieces are data and zero runs for a disk of size bytes: data at the
// start, a run of written zeros, data across a cluster boundary, holes,
// and data at the end.
func testPieces(size int64) []piece {
	if size <= 4096 {
		return []piece{{0, pattern(int(min(size, 300)), 1)}, {size - 1, []byte{0xab}}}
	}
	ps := []piece{{0, pattern(4096, 1)}}
	if size > 3*mib {
		ps = append(ps,
			piece{mib + 4096, make([]byte, 64<<10)}, // written zeros
			piece{2*mib - 1000, pattern(3000, 2)},   // across a cluster boundary
		)
	}
	return append(ps, piece{size - 777, pattern(777, 3)})
}

func makeRaw(t *testing.T, path string, size int64, ps []piece) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if _, err := f.WriteAt(p.data, p.off); err != nil {
			t.Fatal(err)
		}
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func clusterOpt(cs string) disk.CreateOptions {
	if cs == "" {
		return disk.CreateOptions{}
	}
	return disk.CreateOptions{Options: map[string]string{"cluster_size": cs}}
}

// convertFile converts the raw file at src into a Parallels image at dst
// with our converter and writer, and checks it with our Check.
func convertFile(t *testing.T, src, dst string, opt disk.CreateOptions) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	im, err := raw.Open(in, fileSize(t, src), disk.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	w, err := Create(out, im.Size(), opt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := convert.Copy(context.Background(), w, im, convert.Options{ZeroBlock: BlockSize(opt)}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Check(out, fileSize(t, dst))
	if err != nil || !rep.OK() {
		t.Fatalf("our check of %s: %+v, %v", dst, rep, err)
	}
}

func openFile(t *testing.T, path string) (disk.Image, *os.File) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	im, err := Open(f, fileSize(t, path), disk.OpenOptions{})
	if err != nil {
		t.Fatalf("Open %s: %v", path, err)
	}
	return im, f
}

// assertReads checks that im reads as the raw disk holding ps.
func assertReads(t *testing.T, im disk.Image, size int64, ps []piece) {
	t.Helper()
	if im.Size() != size {
		t.Fatalf("size %d, want %d", im.Size(), size)
	}
	want := func(off, n int64) []byte {
		b := make([]byte, n)
		for _, p := range ps {
			for i, c := range p.data {
				if o := p.off + int64(i); o >= off && o < off+n {
					b[o-off] = c
				}
			}
		}
		return b
	}
	windows := [][2]int64{{0, size}}
	if size > 8*mib {
		windows = nil
		for _, p := range ps {
			off := max(0, p.off-4096)
			windows = append(windows, [2]int64{off, min(size-off, int64(len(p.data))+8192)})
		}
	}
	for _, w := range windows {
		got := make([]byte, w[1])
		if _, err := im.ReadAt(got, w[0]); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want(w[0], w[1])) {
			t.Fatalf("bytes in [%d, +%d) differ from the source", w[0], w[1])
		}
	}
	ext, err := im.Extents(0, size)
	if err != nil {
		t.Fatal(err)
	}
	var pos int64
	for _, e := range ext {
		if e.Offset != pos {
			t.Fatalf("extents: %+v does not continue at %d", e, pos)
		}
		pos = e.End()
	}
	if pos != size {
		t.Fatalf("extents end at %d, want %d", pos, size)
	}
}

var testSizes = []struct {
	name string
	size int64
}{
	{"1B", 1},
	{"511B", 511},
	{"not a cluster multiple", 5*mib + 12345},
	{"1TiB-12345 sparse", 1<<40 - 12345},
	{"2TiB sparse", 2 << 40},
}

// qemuBlockStatusLimit: qemu-img 7.2 asks the Parallels driver for the
// block status of the rest of the disk in sectors held in an int, and
// fails an assertion from 1 TiB on (its own images too): qemu-img compare
// and map cannot judge such images, only qemu-img check and info can.
const qemuBlockStatusLimit = 1 << 40

// assertQemuAccepts: qemu-img check finds no errors, corruptions or leaks.
func assertQemuAccepts(t *testing.T, path string) oracle.CheckReport {
	t.Helper()
	r, code := oracle.Check(t, path, "parallels")
	if code != 0 || r.CheckErrors != 0 || r.Corruptions != 0 || r.Leaks != 0 {
		out, _, _ := oracle.Run(t, "check", "-f", "parallels", path)
		t.Fatalf("qemu-img check: exit %d %+v\n%s", code, r, out)
	}
	return r
}

// TestQemuJudgesOurs: what we write, qemu-img check accepts with no errors
// or leaks, and qemu-img compare finds identical to the source; our check
// and info give qemu-img's figures.
func TestQemuJudgesOurs(t *testing.T) {
	oracle.QemuImg(t)
	for _, cs := range []string{"", "64K", "1536"} {
		for _, sz := range testSizes {
			if cs != "" && sz.size > 8*mib {
				continue // a 2 TiB catalog of small clusters is beyond the limit
			}
			t.Run(fmt.Sprintf("cluster_size=%s/%s", cs, sz.name), func(t *testing.T) {
				dir := t.TempDir()
				src, dst := filepath.Join(dir, "src.raw"), filepath.Join(dir, "out.hdd")
				ps := testPieces(sz.size)
				makeRaw(t, src, sz.size, ps)
				convertFile(t, src, dst, clusterOpt(cs))
				q := assertQemuAccepts(t, dst)
				im, f := openFile(t, dst)
				ours, err := Check(f, fileSize(t, dst))
				if err != nil || ours.ImageEndOffset != q.ImageEndOffset || ours.TotalClusters != q.TotalClusters ||
					ours.AllocatedClusters != q.AllocatedClusters || ours.FragmentedClusters != q.FragmentedClusters {
					t.Fatalf("our check %+v (%v), qemu-img's %+v", ours, err, q)
				}
				want := (sz.size + 511) &^ 511
				info := oracle.ImageInfo(t, dst)
				if got := im.(disk.Describer).Info(); info.Format != "parallels" || info.VirtualSize != want ||
					got.VirtualSize != info.VirtualSize || got.ClusterSize != info.ClusterSize {
					t.Fatalf("qemu-img info %+v, ours %+v", info, got)
				}
				if want >= qemuBlockStatusLimit {
					assertReads(t, im, want, ps)
					return
				}
				if sz.size%512 != 0 {
					os.Truncate(src, want) // qemu-img compare wants the same size
				}
				oracle.AssertSame(t, src, "raw", dst, "parallels")
			})
		}
	}
}

// TestWeReadQemus: what qemu-img convert writes, we read as qemu-img does.
func TestWeReadQemus(t *testing.T) {
	oracle.QemuImg(t)
	for _, cs := range []string{"", "64K", "1536"} {
		for _, sz := range testSizes {
			if cs != "" && sz.size > 8*mib {
				continue
			}
			t.Run(fmt.Sprintf("cluster_size=%s/%s", cs, sz.name), func(t *testing.T) {
				dir := t.TempDir()
				src, dst := filepath.Join(dir, "src.raw"), filepath.Join(dir, "q.hdd")
				ps := testPieces(sz.size)
				makeRaw(t, src, sz.size, ps)
				args := []string{"convert", "-f", "raw", "-O", "parallels"}
				if cs != "" {
					args = append(args, "-o", "cluster_size="+cs)
				}
				oracle.MustRun(t, append(args, src, dst)...)
				info := oracle.ImageInfo(t, dst)
				im, f := openFile(t, dst)
				if got := im.(disk.Describer).Info(); got.VirtualSize != info.VirtualSize {
					t.Fatalf("our info %+v, qemu-img's %+v", got, info)
				}
				assertReads(t, im, info.VirtualSize, ps)
				q, _ := oracle.Check(t, dst, "parallels")
				ours, err := Check(f, fileSize(t, dst))
				if err != nil || ours.Leaks != q.Leaks || ours.Corruptions != q.Corruptions || ours.ImageEndOffset != q.ImageEndOffset || ours.AllocatedClusters != q.AllocatedClusters {
					t.Fatalf("our check %+v (%v), qemu-img's %+v", ours, err, q)
				}
			})
		}
	}
}

// TestEmptyLargeImage: a blank image whose catalog is longer than a
// cluster passes qemu-img check without leaks.
func TestEmptyLargeImage(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "e.hdd")
	f, _ := os.Create(path)
	defer f.Close()
	w, err := Create(f, 2<<40, disk.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	assertQemuAccepts(t, path)
	im, _ := openFile(t, path)
	got := make([]byte, mib)
	im.ReadAt(got, 0)
	if !bytes.Equal(got, make([]byte, mib)) {
		t.Fatal("a blank image reads data")
	}
}

// TestCorpus: the Parallels images of the corpus (authentic version 1 and
// 2 headers, a format extension with a bitmap) read as qemu-img reads them
// and check with its figures.
func TestCorpus(t *testing.T) {
	oracle.QemuImg(t)
	n := 0
	for _, e := range testcorpus.Manifest(t) {
		if e.QemuFormat != "parallels" {
			continue
		}
		n++
		t.Run(e.File, func(t *testing.T) {
			path, ok := testcorpus.Path(t, e, 64<<20)
			if !ok {
				t.Skip("too large to unpack")
			}
			want := filepath.Join(t.TempDir(), "want.raw")
			oracle.MustRun(t, "convert", "-f", "parallels", "-O", "raw", path, want)
			im, f := openFile(t, path)
			assertSameAsRaw(t, im, want)
			q, _ := oracle.Check(t, path, "parallels")
			ours, err := Check(f, fileSize(t, path))
			if err != nil || ours.Leaks != q.Leaks || ours.Corruptions != q.Corruptions || ours.ImageEndOffset != q.ImageEndOffset ||
				ours.AllocatedClusters != q.AllocatedClusters || ours.FragmentedClusters != q.FragmentedClusters || ours.TotalClusters != q.TotalClusters {
				t.Fatalf("our check %+v (%v), qemu-img's %+v", ours, err, q)
			}
		})
	}
	if n == 0 {
		t.Fatal("no Parallels image in the corpus manifest")
	}
}

// assertSameAsRaw compares im with the sparse raw file at path where
// either holds data: the images may be large (64 GiB) and mostly holes.
func assertSameAsRaw(t *testing.T, im disk.Image, path string) {
	t.Helper()
	rf, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	r, err := raw.Open(rf, fileSize(t, path), disk.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if im.Size() != r.Size() {
		t.Fatalf("size %d, qemu-img's %d", im.Size(), r.Size())
	}
	a, b := make([]byte, mib), make([]byte, mib)
	for _, src := range []disk.Image{im, r} {
		ext, err := src.Extents(0, src.Size())
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ext {
			if e.Zero {
				continue
			}
			for off := e.Offset; off < e.End(); off += mib {
				n := min(mib, e.End()-off)
				if _, err := im.ReadAt(a[:n], off); err != nil && err != io.EOF {
					t.Fatal(err)
				}
				if _, err := r.ReadAt(b[:n], off); err != nil && err != io.EOF {
					t.Fatal(err)
				}
				if !bytes.Equal(a[:n], b[:n]) {
					t.Fatalf("reads differently from qemu-img in [%d, +%d)", off, n)
				}
			}
		}
	}
}

// TestInUse: an image not closed cleanly is read (as qemu reads it
// read-only) and its check counts the corruption qemu-img counts.
func TestInUse(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	src, path := filepath.Join(dir, "src.raw"), filepath.Join(dir, "q.hdd")
	ps := testPieces(3 * mib)
	makeRaw(t, src, 3*mib, ps)
	oracle.MustRun(t, "convert", "-f", "raw", "-O", "parallels", src, path)
	b, _ := os.ReadFile(path)
	binary.LittleEndian.PutUint32(b[44:], inUseMagic)
	os.WriteFile(path, b, 0o644)
	q, _ := oracle.Check(t, path, "parallels")
	ours, err := Check(bytes.NewReader(b), int64(len(b)))
	if err != nil || ours.Corruptions != 1 || q.Corruptions != 1 {
		t.Fatalf("our check %+v (%v), qemu-img's %+v", ours, err, q)
	}
	facts, err := Inspect(bytes.NewReader(b), int64(len(b)), disk.Limits{})
	if err != nil || len(facts.Notes) == 0 || facts.Info.Dirty != oracle.ImageInfo(t, path).DirtyFlag {
		t.Fatalf("Inspect: %+v, %v", facts, err)
	}
	im, _ := openFile(t, path)
	assertReads(t, im, 3*mib, ps)
}

// TestVersion1 reads a "WithoutFreeSpace" image, whose catalog counts
// sectors, made from a qemu-img image by rewriting its header and catalog.
func TestVersion1(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	src, path := filepath.Join(dir, "src.raw"), filepath.Join(dir, "q.hdd")
	ps := testPieces(5*mib + 12345)
	makeRaw(t, src, 5*mib+12345, ps)
	oracle.MustRun(t, "convert", "-f", "raw", "-O", "parallels", "-o", "cluster_size=64K", src, path)
	b, _ := os.ReadFile(path)
	le := binary.LittleEndian
	copy(b, magicV1)
	entries := le.Uint32(b[32:])
	for i := range entries {
		e := le.Uint32(b[headerSize+4*i:])
		le.PutUint32(b[headerSize+4*i:], e*128) // clusters of 128 sectors
	}
	os.WriteFile(path, b, 0o644)
	want := filepath.Join(dir, "want.raw")
	oracle.MustRun(t, "convert", "-f", "parallels", "-O", "raw", path, want)
	im, _ := openFile(t, path)
	assertSameAsRaw(t, im, want)
	assertReads(t, im, (5*mib+12345+511)&^511, ps)
}

// TestDeterministic: the same source and options give the same bytes.
func TestDeterministic(t *testing.T) {
	for _, cs := range []string{"", "64K"} {
		dir := t.TempDir()
		src := filepath.Join(dir, "src.raw")
		makeRaw(t, src, 5*mib+3, testPieces(5*mib+3))
		a, b := filepath.Join(dir, "a.hdd"), filepath.Join(dir, "b.hdd")
		convertFile(t, src, a, clusterOpt(cs))
		convertFile(t, src, b, clusterOpt(cs))
		ab, _ := os.ReadFile(a)
		bb, _ := os.ReadFile(b)
		if !bytes.Equal(ab, bb) {
			t.Fatalf("cluster_size=%s: two writes differ", cs)
		}
	}
}

// TestResize: growing past the room of the catalog (which moves clusters)
// and shrinking (which compacts them), judged by qemu-img.
func TestResize(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	path, rawPath := filepath.Join(dir, "out.hdd"), filepath.Join(dir, "want.raw")
	f, _ := os.Create(path)
	defer f.Close()
	const cs = 1024
	w, err := Create(f, 20*cs, clusterOpt("1K"))
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 20*cs)
	write := func(off int64, p []byte) {
		if _, err := w.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], p)
	}
	write(19*cs+10, pattern(100, 1))
	write(0, pattern(3000, 2))
	write(10*cs, pattern(cs, 3))
	write(5*cs, pattern(cs, 4))
	if err := w.Resize(8*cs+512, false); !errors.Is(err, disk.ErrShrink) {
		t.Fatalf("shrink without allowShrink: %v", err)
	}
	if err := w.Resize(8*cs+512, true); err != nil {
		t.Fatal(err)
	}
	want = want[:8*cs+512]
	// 1000 clusters need a catalog of 4 KiB: data clusters move.
	if err := w.Resize(1000*cs, false); err != nil {
		t.Fatal(err)
	}
	want = append(want, make([]byte, 1000*cs-len(want))...)
	write(8*cs+600, []byte{7})
	write(999*cs, pattern(cs, 5))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(rawPath, want, 0o644)
	assertQemuAccepts(t, path)
	oracle.AssertSame(t, rawPath, "raw", path, "parallels")
}

// TestRefused: malformed headers fail cleanly, each with its class.
func TestRefused(t *testing.T) {
	oracle.QemuImg(t)
	le := binary.LittleEndian
	tests := []struct {
		name  string
		edit  func(b []byte) []byte
		class error
		msg   string
	}{
		{"zero sectors a cluster", func(b []byte) []byte { le.PutUint32(b[28:], 0); return b }, disk.ErrFormat, "cluster of 0 sectors"},
		{"version", func(b []byte) []byte { le.PutUint32(b[16:], 3); return b }, disk.ErrUnsupported, "version 3"},
		// CVE-2014-0143 (qemu iotest 076): catalog sizes that overflow.
		{"huge catalog", func(b []byte) []byte { le.PutUint32(b[32:], 0xffffffff); return b }, disk.ErrLimit, "catalog"},
		{"catalog beyond the file", func(b []byte) []byte { le.PutUint32(b[32:], 1<<20); return b }, disk.ErrFormat, "beyond the end"},
		{"huge disk", func(b []byte) []byte { le.PutUint64(b[36:], 1<<62); return b }, disk.ErrLimit, "virtual size"},
		{"short header", func(b []byte) []byte { return b[:40] }, disk.ErrFormat, "beyond the end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "q.hdd")
			oracle.MustRun(t, "create", "-q", "-f", "parallels", path, "3M")
			b, _ := os.ReadFile(path)
			b = tt.edit(b)
			_, err := Open(bytes.NewReader(b), int64(len(b)), disk.OpenOptions{})
			if !errors.Is(err, tt.class) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Open: %v; want %v with %q", err, tt.class, tt.msg)
			}
			if _, err := Inspect(bytes.NewReader(b), int64(len(b)), disk.Limits{}); !errors.Is(err, tt.class) {
				t.Fatalf("Inspect: %v", err)
			}
			if _, err := Check(bytes.NewReader(b), int64(len(b))); !errors.Is(err, tt.class) {
				t.Fatalf("Check: %v", err)
			}
		})
	}
}

// TestOptions: cluster_size is checked before anything is created, naming
// what it must be; other options are refused, naming the valid one.
func TestOptions(t *testing.T) {
	f, _ := disk.Lookup("parallels")
	for _, v := range []string{"512", "64K", "1M", "1G", "1536"} {
		if err := f.CheckOptions(clusterOpt(v)); err != nil {
			t.Errorf("cluster_size=%s: %v", v, err)
		}
	}
	for _, v := range []string{"1000", "2G", "0", "x"} {
		if err := f.CheckOptions(clusterOpt(v)); !errors.Is(err, disk.ErrOption) {
			t.Errorf("cluster_size=%s: %v", v, err)
		}
	}
	err := f.CheckOptions(disk.CreateOptions{Options: map[string]string{"static": "on"}})
	if !errors.Is(err, disk.ErrOption) || !strings.Contains(err.Error(), "cluster_size") {
		t.Fatalf("static: %v", err)
	}
}

// TestShortCatalog: a catalog shorter than the disk leaves the rest
// reading as zeros, as qemu-img reads it, and check gives its figures.
func TestShortCatalog(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	src, path := filepath.Join(dir, "src.raw"), filepath.Join(dir, "q.hdd")
	makeRaw(t, src, 3*mib, testPieces(3*mib))
	oracle.MustRun(t, "convert", "-f", "raw", "-O", "parallels", src, path)
	b, _ := os.ReadFile(path)
	binary.LittleEndian.PutUint32(b[32:], 1)
	os.WriteFile(path, b, 0o644)
	want := filepath.Join(dir, "want.raw")
	oracle.MustRun(t, "convert", "-f", "parallels", "-O", "raw", path, want)
	im, f := openFile(t, path)
	assertSameAsRaw(t, im, want)
	q, _ := oracle.Check(t, path, "parallels")
	ours, err := Check(f, fileSize(t, path))
	if err != nil || ours.Leaks != q.Leaks || ours.AllocatedClusters != q.AllocatedClusters || ours.ImageEndOffset != q.ImageEndOffset || ours.TotalClusters != q.TotalClusters {
		t.Fatalf("our check %+v (%v), qemu-img's %+v", ours, err, q)
	}
}
