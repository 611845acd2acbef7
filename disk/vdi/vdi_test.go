package vdi

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
// start, a run of written zeros (allocated in the raw file, skipped by the
// converter), data across a block boundary, holes, and data at the end.
func testPieces(size int64) []piece {
	if size <= 4096 {
		return []piece{{0, pattern(int(min(size, 300)), 1)}, {size - 1, []byte{0xab}}}
	}
	ps := []piece{{0, pattern(4096, 1)}}
	if size > 3*mib {
		ps = append(ps,
			piece{mib + 4096, make([]byte, 64<<10)}, // written zeros
			piece{2*mib - 1000, pattern(3000, 2)},   // across a block boundary
		)
	}
	return append(ps, piece{size - 777, pattern(777, 3)})
}

// makeRaw writes a sparse raw file of size bytes holding ps.
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

// convertFile converts the raw file at src into a VDI at dst with our
// converter and writer, and returns the bytes of dst.
func convertFile(t *testing.T, src, dst string, opt disk.CreateOptions) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	st, _ := in.Stat()
	im, err := raw.Open(in, st.Size(), disk.OpenOptions{})
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

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func staticOpt(static bool) disk.CreateOptions {
	if static {
		return disk.CreateOptions{Options: map[string]string{"static": "on"}}
	}
	return disk.CreateOptions{}
}

// openFile opens a VDI file with our reader.
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

// assertReads checks that im reads as the raw disk holding ps: every
// piece, and zeros in every extent said to be zero and around the pieces.
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
	if size <= 8*mib {
		got := make([]byte, size)
		if _, err := im.ReadAt(got, 0); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want(0, size)) {
			t.Fatal("the image does not read as its source")
		}
	} else {
		for _, p := range ps {
			off := max(0, p.off-4096)
			n := min(size-off, int64(len(p.data))+8192)
			got := make([]byte, n)
			if _, err := im.ReadAt(got, off); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want(off, n)) {
				t.Fatalf("bytes around %d differ", p.off)
			}
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
		if e.Zero {
			for _, p := range ps {
				if p.off < e.End() && p.off+int64(len(p.data)) > e.Offset && !isZero(p.data) {
					t.Fatalf("zero extent %+v covers data at %d", e, p.off)
				}
			}
		}
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
	{"not a block multiple", 5*mib + 12345},
	{"2TiB sparse", 2 << 40},
}

// TestQemuJudgesOurs: what we write, qemu-img check accepts with no errors
// and qemu-img compare finds identical to the source; qemu-img info gives
// the virtual size and cluster size we say.
func TestQemuJudgesOurs(t *testing.T) {
	oracle.QemuImg(t)
	for _, static := range []bool{false, true} {
		for _, sz := range testSizes {
			t.Run(fmt.Sprintf("static=%t/%s", static, sz.name), func(t *testing.T) {
				dir := t.TempDir()
				src, dst := filepath.Join(dir, "src.raw"), filepath.Join(dir, "out.vdi")
				ps := testPieces(sz.size)
				makeRaw(t, src, sz.size, ps)
				convertFile(t, src, dst, staticOpt(static))
				r, code := oracle.Check(t, dst, "vdi")
				if code != 0 || r.CheckErrors != 0 || r.Corruptions != 0 || r.Leaks != 0 {
					out, _, _ := oracle.Run(t, "check", "-f", "vdi", dst)
					t.Fatalf("qemu-img check: exit %d %+v\n%s", code, r, out)
				}
				want := (sz.size + 511) &^ 511
				info := oracle.ImageInfo(t, dst)
				if info.Format != "vdi" || info.VirtualSize != want || info.ClusterSize != mib {
					t.Fatalf("qemu-img info: %+v", info)
				}
				im, f := openFile(t, dst)
				if got := im.(disk.Describer).Info(); got.VirtualSize != info.VirtualSize || got.ClusterSize != info.ClusterSize {
					t.Fatalf("our info %+v, qemu-img's %+v", got, info)
				}
				if static && sz.size > 8*mib {
					// Every block of a static image is allocated: qemu-img
					// compare would read 2 TiB. Ours read it instead, where
					// the data is.
					assertReads(t, im, want, ps)
					return
				}
				if sz.size%512 != 0 {
					// qemu-img compare needs the same size: pad the source
					// as the image is padded.
					os.Truncate(src, want)
				}
				oracle.AssertSame(t, src, "raw", dst, "vdi")
				_ = f
			})
		}
	}
}

// TestWeReadQemus: what qemu-img convert writes, we read as qemu-img does.
func TestWeReadQemus(t *testing.T) {
	oracle.QemuImg(t)
	for _, static := range []bool{false, true} {
		for _, sz := range testSizes {
			if static && sz.size > 8*mib {
				continue // qemu-img would write 2 TiB of zeros
			}
			t.Run(fmt.Sprintf("static=%t/%s", static, sz.name), func(t *testing.T) {
				dir := t.TempDir()
				src, dst := filepath.Join(dir, "src.raw"), filepath.Join(dir, "q.vdi")
				ps := testPieces(sz.size)
				makeRaw(t, src, sz.size, ps)
				args := []string{"convert", "-f", "raw", "-O", "vdi"}
				if static {
					args = append(args, "-o", "static=on")
				}
				oracle.MustRun(t, append(args, src, dst)...)
				info := oracle.ImageInfo(t, dst)
				im, f := openFile(t, dst)
				if got := im.(disk.Describer).Info(); got.VirtualSize != info.VirtualSize || got.ClusterSize != info.ClusterSize {
					t.Fatalf("our info %+v, qemu-img's %+v", got, info)
				}
				assertReads(t, im, info.VirtualSize, ps)
				rep, err := Check(f, fileSize(t, dst))
				if err != nil || !rep.OK() {
					t.Fatalf("our check: %+v %v", rep, err)
				}
			})
		}
	}
}

// TestDeterministic: the same source and options give the same bytes; a
// different content gives other UUIDs.
func TestDeterministic(t *testing.T) {
	for _, static := range []bool{false, true} {
		dir := t.TempDir()
		src := filepath.Join(dir, "src.raw")
		makeRaw(t, src, 5*mib+3, testPieces(5*mib+3))
		a, b := filepath.Join(dir, "a.vdi"), filepath.Join(dir, "b.vdi")
		convertFile(t, src, a, staticOpt(static))
		convertFile(t, src, b, staticOpt(static))
		ab, _ := os.ReadFile(a)
		bb, _ := os.ReadFile(b)
		if !bytes.Equal(ab, bb) {
			t.Fatalf("static=%t: two writes differ", static)
		}
		uuid := ab[offUUIDCreate : offUUIDCreate+16]
		if isZero(uuid) || bytes.Equal(uuid, ab[offUUIDModify:offUUIDModify+16]) {
			t.Fatalf("creation UUID %x, modification UUID %x", uuid, ab[offUUIDModify:offUUIDModify+16])
		}
		if !isZero(ab[offUUIDLinkage : offUUIDParent+16]) {
			t.Fatal("linkage or parent UUID set")
		}
		makeRaw(t, src, 5*mib+3, append(testPieces(5*mib+3), piece{mib, []byte{9}}))
		convertFile(t, src, b, staticOpt(static))
		bb, _ = os.ReadFile(b)
		if bytes.Equal(uuid, bb[offUUIDCreate:offUUIDCreate+16]) {
			t.Fatalf("static=%t: another content, the same UUID", static)
		}
	}
}

// TestResize: growing and shrinking after writing, judged by qemu-img.
func TestResize(t *testing.T) {
	oracle.QemuImg(t)
	for _, static := range []bool{false, true} {
		t.Run(fmt.Sprintf("static=%t", static), func(t *testing.T) {
			dir := t.TempDir()
			path, rawPath := filepath.Join(dir, "out.vdi"), filepath.Join(dir, "want.raw")
			f, _ := os.Create(path)
			defer f.Close()
			w, err := Create(f, 6*mib, staticOpt(static))
			if err != nil {
				t.Fatal(err)
			}
			want := make([]byte, 6*mib)
			write := func(off int64, p []byte) {
				if _, err := w.WriteAt(p, off); err != nil {
					t.Fatal(err)
				}
				copy(want[off:], p)
			}
			// Blocks 5, 0, 3 and 1 in that order: shrinking to 2.5 MiB
			// drops 5 and 3 and moves 1 into a freed index.
			write(5*mib+10, pattern(100, 1))
			write(0, pattern(5000, 2))
			write(3*mib, pattern(mib, 3))
			write(mib, pattern(mib, 4))
			if err := w.Resize(2*mib+mib/2, false); !errors.Is(err, disk.ErrShrink) {
				t.Fatalf("shrink without allowShrink: %v", err)
			}
			if err := w.Resize(2*mib+mib/2, true); err != nil {
				t.Fatal(err)
			}
			want = want[:2*mib+mib/2]
			if err := w.Resize(4*mib+512, false); err != nil {
				t.Fatal(err)
			}
			want = append(want, make([]byte, 4*mib+512-len(want))...)
			write(2*mib+mib/2+1, []byte{7})
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(rawPath, want, 0o644)
			r, code := oracle.Check(t, path, "vdi")
			if code != 0 || r.Corruptions != 0 || r.CheckErrors != 0 {
				t.Fatalf("qemu-img check: %d %+v", code, r)
			}
			oracle.AssertSame(t, rawPath, "raw", path, "vdi")
		})
	}
}

// TestCheckAsQemu: images with a broken block map get the corruptions
// qemu-img check counts.
func TestCheckAsQemu(t *testing.T) {
	oracle.QemuImg(t)
	le := binary.LittleEndian
	tests := []struct {
		name string
		edit func(b []byte)
	}{
		{"index used twice", func(b []byte) { le.PutUint32(b[0x200+4:], 0) }},
		{"index too large", func(b []byte) { le.PutUint32(b[0x200+8:], 77) }},
		{"allocated count", func(b []byte) { le.PutUint32(b[offAllocated:], 9) }},
		{"zero block", func(b []byte) { le.PutUint32(b[0x200+4:], discarded); le.PutUint32(b[offAllocated:], 2) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			src, path := filepath.Join(dir, "src.raw"), filepath.Join(dir, "q.vdi")
			makeRaw(t, src, 4*mib, []piece{{0, pattern(10, 1)}, {mib, pattern(10, 2)}, {2 * mib, pattern(10, 3)}})
			oracle.MustRun(t, "convert", "-f", "raw", "-O", "vdi", src, path)
			b, _ := os.ReadFile(path)
			tt.edit(b)
			os.WriteFile(path, b, 0o644)
			q, _ := oracle.Check(t, path, "vdi")
			rep, err := Check(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatal(err)
			}
			if rep.Corruptions != q.Corruptions || rep.Leaks != q.Leaks || rep.Errors != q.CheckErrors {
				t.Fatalf("ours %+v, qemu-img's %+v", rep, q)
			}
			if tt.name == "zero block" {
				im, _ := Open(bytes.NewReader(b), int64(len(b)), disk.OpenOptions{})
				got := make([]byte, 10)
				im.ReadAt(got, mib)
				if !isZero(got) {
					t.Fatal("a zero (discarded) block reads as data")
				}
			}
		})
	}
}

// TestRefused: malformed and unsafe headers fail cleanly, each with its
// class, where qemu-img refuses them too.
func TestRefused(t *testing.T) {
	oracle.QemuImg(t)
	le := binary.LittleEndian
	tests := []struct {
		name  string
		edit  func(b []byte) []byte
		class error
		msg   string
	}{
		{"version 1.0", func(b []byte) []byte { le.PutUint32(b[offVersion:], 0x00010000); return b }, disk.ErrUnsupported, "version 1.0"},
		{"block size", func(b []byte) []byte { le.PutUint32(b[offBlockSize:], 2*mib); return b }, disk.ErrUnsupported, "block size"},
		{"sector size", func(b []byte) []byte { le.PutUint32(b[offSectorSize:], 4096); return b }, disk.ErrUnsupported, "sector size"},
		{"parent UUID", func(b []byte) []byte { b[offUUIDParent] = 1; return b }, disk.ErrUnsafe, "parent"},
		{"linkage UUID", func(b []byte) []byte { b[offUUIDLinkage+15] = 1; return b }, disk.ErrUnsafe, "parent"},
		{"differencing", func(b []byte) []byte { le.PutUint32(b[offImageType:], 4); return b }, disk.ErrUnsafe, "differencing"},
		{"too small a map", func(b []byte) []byte { le.PutUint32(b[offBlocks:], 1); return b }, disk.ErrFormat, "cover less"},
		{"unaligned map", func(b []byte) []byte { le.PutUint32(b[offBmap:], 0x201); return b }, disk.ErrUnsupported, "sector boundary"},
		{"map beyond the file", func(b []byte) []byte { return b[:0x200+4] }, disk.ErrFormat, "beyond the end"},
		{"huge map", func(b []byte) []byte {
			le.PutUint32(b[offBlocks:], maxBlocks)
			le.PutUint64(b[offDiskSize:], 1<<40)
			return b
		}, disk.ErrLimit, "exceeds the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "q.vdi")
			oracle.MustRun(t, "create", "-q", "-f", "vdi", path, "3M")
			b, _ := os.ReadFile(path)
			b = tt.edit(b)
			os.WriteFile(path, b, 0o644)
			// qemu-img refuses them too, but for the image type, which it
			// ignores, and a map it does not check against the file.
			if _, _, code := oracle.Run(t, "info", "-f", "vdi", path); code == 0 && !strings.Contains("differencing map beyond the file too small a map huge map", tt.name) {
				t.Errorf("qemu-img reads it")
			}
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

// TestOptions: static takes on and off; other options are refused with
// the valid ones named.
func TestOptions(t *testing.T) {
	f, _ := disk.Lookup("vdi")
	if err := f.CheckOptions(disk.CreateOptions{Options: map[string]string{"static": "on"}}); err != nil {
		t.Fatal(err)
	}
	err := f.CheckOptions(disk.CreateOptions{Options: map[string]string{"static": "maybe"}})
	if !errors.Is(err, disk.ErrOption) || !strings.Contains(err.Error(), "on, off") {
		t.Fatalf("static=maybe: %v", err)
	}
	err = f.CheckOptions(disk.CreateOptions{Options: map[string]string{"cluster_size": "2M"}})
	if !errors.Is(err, disk.ErrOption) || !strings.Contains(err.Error(), "static") {
		t.Fatalf("cluster_size: %v", err)
	}
}

// TestVirtualBoxLayout reads an image laid out as VirtualBox writes one
// (the corpus has no VirtualBox-made VDI): its header text, a legacy
// geometry, data from the first MiB boundary, blocks stored out of order,
// a discarded (zero) block, an unallocated one, and an odd disk size as
// VBoxManage convertfromraw writes, which qemu rounds up to a sector. We
// read it as qemu-img does and check it with its figures.
func TestVirtualBoxLayout(t *testing.T) {
	oracle.QemuImg(t)
	le := binary.LittleEndian
	const diskSize = 4*mib + 100
	b := make([]byte, dataAlign+2*mib)
	copy(b, "<<< Oracle VM VirtualBox Disk Image >>>\n")
	le.PutUint32(b[offSignature:], signature)
	le.PutUint32(b[offVersion:], version11)
	le.PutUint32(b[offHeaderSize:], headerSize)
	le.PutUint32(b[offImageType:], typeDynamic)
	le.PutUint32(b[offBmap:], 0x200)
	le.PutUint32(b[offData:], dataAlign)
	le.PutUint32(b[0x15c:], 9)  // legacy cylinders
	le.PutUint32(b[0x160:], 16) // heads
	le.PutUint32(b[0x164:], 63) // sectors
	le.PutUint32(b[offSectorSize:], sectorSize)
	le.PutUint64(b[offDiskSize:], diskSize)
	le.PutUint32(b[offBlockSize:], blockSize)
	le.PutUint32(b[offBlocks:], 5)
	le.PutUint32(b[offAllocated:], 2)
	copy(b[offUUIDCreate:], "\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff\x01")
	copy(b[offUUIDModify:], "\x21\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff\x02")
	for i, e := range []uint32{1, discarded, 0, unallocated, unallocated} {
		le.PutUint32(b[0x200+4*i:], e)
	}
	copy(b[dataAlign:], pattern(mib, 5))       // index 0: block 2
	copy(b[dataAlign+mib:], pattern(mib-7, 6)) // index 1: block 0
	path := filepath.Join(t.TempDir(), "vbox.vdi")
	os.WriteFile(path, b, 0o644)

	want := filepath.Join(t.TempDir(), "want.raw")
	oracle.MustRun(t, "convert", "-f", "vdi", "-O", "raw", path, want)
	wb, _ := os.ReadFile(want)
	im, f := openFile(t, path)
	if im.Size() != int64(len(wb)) || im.Size() != (diskSize+511)&^511 {
		t.Fatalf("size %d, qemu-img's %d", im.Size(), len(wb))
	}
	got := make([]byte, len(wb))
	if _, err := im.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, wb) {
		t.Fatal("reads differently from qemu-img")
	}
	q, _ := oracle.Check(t, path, "vdi")
	rep, err := Check(f, int64(len(b)))
	if err != nil || rep.Corruptions != q.Corruptions || !rep.OK() {
		t.Fatalf("our check %+v (%v), qemu-img's %+v", rep, err, q)
	}
}
