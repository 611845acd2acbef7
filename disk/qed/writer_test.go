package qed

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/convert"
	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/disk/raw"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

func opts(kv ...string) disk.CreateOptions {
	o := disk.CreateOptions{Options: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		o.Options[kv[i]] = kv[i+1]
	}
	return o
}

// twin is a QED image being written beside a raw file that receives the
// same writes: qemu-img compare then tells whether the QED image holds what
// it should.
type twin struct {
	t             *testing.T
	path, rawPath string
	f, raw        *os.File
	w             disk.Writer
	size          int64
}

func newTwin(t *testing.T, size int64, opt disk.CreateOptions) *twin {
	t.Helper()
	dir := t.TempDir()
	tw := &twin{t: t, path: filepath.Join(dir, "out.qed"), rawPath: filepath.Join(dir, "want.raw")}
	var err error
	if tw.f, err = os.Create(tw.path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tw.f.Close() })
	if tw.raw, err = os.Create(tw.rawPath); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tw.raw.Close() })
	if tw.w, err = Create(tw.f, size, opt); err != nil {
		t.Fatal(err)
	}
	tw.size = (size + 511) &^ 511
	if err := tw.raw.Truncate(tw.size); err != nil {
		t.Fatal(err)
	}
	return tw
}

func (tw *twin) write(p []byte, off int64) {
	tw.t.Helper()
	if n, err := tw.w.WriteAt(p, off); err != nil || n != len(p) {
		tw.t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", len(p), off, n, err)
	}
	if _, err := tw.raw.WriteAt(p, off); err != nil {
		tw.t.Fatal(err)
	}
}

// verify closes the writer and checks the image with qemu-img (check with
// no errors or leaks, info, compare with the raw twin), with our Check
// (same figures) and with our reader.
func (tw *twin) verify() {
	tw.t.Helper()
	if err := tw.w.Close(); err != nil {
		tw.t.Fatalf("Close: %v", err)
	}
	assertValid(tw.t, tw.path, tw.size)
	oracle.AssertSame(tw.t, tw.path, "qed", tw.rawPath, "raw")
}

// assertValid: qemu-img check finds nothing, our Check agrees, and info
// says qed, the virtual size, not dirty.
func assertValid(t testing.TB, path string, size int64) {
	t.Helper()
	q, code := assertCheckAgrees(t, path)
	ours, _ := checkFile(t, path)
	if !ours.OK() || (code != 0 && code != 3) || q.CheckErrors != 0 || q.Corruptions != 0 {
		out, _, _ := oracle.Run(t, "check", "-f", "qed", path)
		t.Fatalf("qemu-img check %s: exit %d, %+v\n%s", path, code, q, out)
	}
	info := oracle.ImageInfo(t, path)
	if info.Format != "qed" || info.VirtualSize != size || info.DirtyFlag {
		t.Fatalf("qemu-img info %s: %+v; want qed, virtual size %d, clean", path, info, size)
	}
	if st, err := os.Stat(path); err != nil || st.Size()%info.ClusterSize != 0 {
		t.Fatalf("file size %v is not a whole number of clusters of %d", st.Size(), info.ClusterSize)
	}
}

// TestWriteOddSizes: blank images and images with data, zeros and holes,
// at sizes that are not sector, cluster or table multiples, with every
// table size and a few cluster sizes.
func TestWriteOddSizes(t *testing.T) {
	oracle.QemuImg(t)
	sizes := []int64{0, 1, 511, 512, 100000, 3<<20 + 4096 + 512}
	geometries := [][]string{
		nil,
		{"cluster_size", "4K", "table_size", "2"},
		{"cluster_size", "4096", "table_size", "16"},
		{"cluster_size", "1M", "table_size", "8"},
	}
	for _, geo := range geometries {
		for _, size := range sizes {
			t.Run(fmt.Sprintf("%v/%d", geo, size), func(t *testing.T) {
				tw := newTwin(t, size, opts(geo...))
				rng := rand.New(rand.NewPCG(uint64(size), 7))
				if tw.size > 0 {
					tw.write(randomBytes(rng, 1), 0)
					last := max(0, tw.size-5000)
					tw.write(randomBytes(rng, int(tw.size-last)), last)
					if tw.size > 8192 {
						// Zeros over data, zeros over nothing.
						tw.write(make([]byte, 2000), last+100)
						tw.write(make([]byte, 4096), tw.size/2&^4095)
					}
				}
				tw.verify()
			})
		}
	}
}

// TestWrite2TiB: a sparse 2 TiB image with data at both ends and in the
// middle, across L2 tables, stays small.
func TestWrite2TiB(t *testing.T) {
	oracle.QemuImg(t)
	const size = 2 << 40
	tw := newTwin(t, size, disk.CreateOptions{})
	rng := rand.New(rand.NewPCG(2, 40))
	for _, off := range []int64{0, 1<<40 - 3000, 2<<30 - 100, size - 70000} {
		tw.write(randomBytes(rng, 70000), off)
	}
	tw.verify()
	if info := oracle.ImageInfo(t, tw.path); info.ActualSize > 16<<20 {
		t.Fatalf("a sparse 2 TiB image takes %d bytes on disk", info.ActualSize)
	}
	// Read back through our reader too.
	im := openFile(t, tw.path)
	want := make([]byte, 70000)
	if _, err := tw.raw.ReadAt(want, 1<<40-3000); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 70000)
	if _, err := im.ReadAt(got, 1<<40-3000); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("reading back: %v", err)
	}
}

// Writes in any order, overwrites, partial clusters and L2 tables that the
// writer's cache evicts and reads back.
func TestWriteRandomOrder(t *testing.T) {
	oracle.QemuImg(t)
	// 4 KiB clusters and 2-cluster tables: an L2 table maps 4 MiB, so 512
	// MiB has 128 of them, more than the cache holds in 8 MiB... of 8 KiB
	// pages (1024); use enough writes to touch many.
	tw := newTwin(t, 512<<20, opts("cluster_size", "4K", "table_size", "2"))
	rng := rand.New(rand.NewPCG(3, 4))
	for range 400 {
		n := 1 + rng.IntN(20000)
		off := rng.Int64N(tw.size - int64(n))
		if rng.IntN(5) == 0 {
			tw.write(make([]byte, n), off)
		} else {
			tw.write(randomBytes(rng, n), off)
		}
	}
	tw.verify()
}

// The page cache evicts and reads back pages of large tables.
func TestWriteLargeTables(t *testing.T) {
	oracle.QemuImg(t)
	// 1 MiB clusters, 16-cluster tables: a 16 MiB table, read in 256 KiB
	// pages; 3 GiB of virtual disk with writes far apart. (qemu-img 7.2
	// fails an assertion on runs of 4 GiB in one table: not larger.)
	tw := newTwin(t, 3<<30, opts("cluster_size", "1M", "table_size", "16"))
	w := tw.w.(*wrImage)
	w.pages.capacity = 2 // force evictions
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 40 {
		off := int64(i%7)*(400<<20) + int64(i)*(3<<20)
		tw.write(randomBytes(rng, 5000), off)
	}
	tw.verify()
}

// Writing the same data in the same order twice gives the same bytes: no
// clock, random or map order reaches the file.
func TestWriteDeterministic(t *testing.T) {
	sum := func() [32]byte {
		dir := t.TempDir()
		f, err := os.Create(filepath.Join(dir, "d.qed"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		w, err := Create(f, 3<<30, opts("cluster_size", "4K", "table_size", "2"))
		if err != nil {
			t.Fatal(err)
		}
		w.(*wrImage).pages.capacity = 4
		rng := rand.New(rand.NewPCG(9, 9))
		for range 300 {
			n := 1 + rng.IntN(9000)
			if _, err := w.WriteAt(randomBytes(rng, n), rng.Int64N(3<<30-int64(n))); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(b)
	}
	if a, b := sum(), sum(); a != b {
		t.Fatalf("two writes differ: %x, %x", a, b)
	}
}

// The converter (as single and convert use it) makes from a raw file an
// image qemu-img finds identical; ours reads back qemu-img's conversion of
// the same raw file identically, the other way round.
func TestConvertBothWays(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	rawPath := filepath.Join(dir, "src.raw")
	f, err := os.Create(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	const size = 200<<20 + 12345
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(11, 12))
	for range 30 {
		n := 1 + rng.IntN(3<<20)
		if _, err := f.WriteAt(randomBytes(rng, n), rng.Int64N(size-int64(n))); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	for _, geo := range [][]string{nil, {"cluster_size", "4K", "table_size", "2"}, {"cluster_size", "2M", "table_size", "8"}} {
		t.Run(fmt.Sprint(geo), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.qed")
			convertFile(t, rawPath, out, opts(geo...))
			assertValid(t, out, (size+511)&^511)
			oracle.AssertSame(t, out, "qed", rawPath, "raw")
			// qemu-img's conversion, read by us.
			q := filepath.Join(t.TempDir(), "q.qed")
			args := []string{"convert", "-f", "raw", "-O", "qed"}
			if len(geo) > 0 {
				args = append(args, "-o", geo[0]+"="+geo[1]+","+geo[2]+"="+geo[3])
			}
			oracle.MustRun(t, append(args, rawPath, q)...)
			assertReadsAsQemu(t, q)
		})
	}
}

// convertFile converts the raw file src into a QED image at dst with the
// library's converter.
func convertFile(t testing.TB, src, dst string, opt disk.CreateOptions) {
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
}

func TestCreateOptions(t *testing.T) {
	f, _ := disk.Lookup("qed")
	for _, tc := range []struct {
		opt  disk.CreateOptions
		says string // "" for valid
	}{
		{opts(), ""},
		{opts("cluster_size", "4K", "table_size", "2"), ""},
		{opts("cluster_size", "64M", "table_size", "4"), ""},
		{opts("cluster_size", "2K"), "power of two from 4K to 64M"},
		{opts("cluster_size", "128M"), "power of two from 4K to 64M"},
		{opts("cluster_size", "12K"), "power of two"},
		{opts("table_size", "3"), "table_size takes 2, 4, 8, 16"},
		{opts("table_size", "1"), "table_size takes"},
		{opts("table_size", "32"), "table_size takes"},
		{opts("backing_file", "x"), "cluster_size, table_size"},
		{opts("preallocation", "full"), "cluster_size, table_size"},
	} {
		err := f.CheckOptions(tc.opt)
		if tc.says == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.opt.Options, err)
			}
			continue
		}
		if !errors.Is(err, disk.ErrOption) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%v: %v; want ErrOption saying %q", tc.opt.Options, err, tc.says)
		}
	}
	if _, _, err := createGeometry(opts("table_size", "1")); err == nil || !strings.Contains(err.Error(), "qemu cannot open") {
		t.Errorf("table_size=1: %v", err)
	}
	// Sizes beyond what the tables map are refused, as qemu-img create
	// refuses them: 4K clusters in 2-cluster tables map 4 GiB; 64 MiB
	// clusters in 8-cluster tables map nothing by qemu's arithmetic.
	for _, tc := range []struct {
		opt  disk.CreateOptions
		size int64
		ok   bool
	}{
		{opts("cluster_size", "4K", "table_size", "2"), 4 << 30, true},
		{opts("cluster_size", "4K", "table_size", "2"), 4<<30 + 512, false},
		{opts("cluster_size", "64M", "table_size", "8"), 1 << 20, false},
		{opts(), 64 << 40, true},
		{opts(), 1, true},
	} {
		got, _, err := f.Size(tc.size, tc.opt)
		if (err == nil) != tc.ok {
			t.Errorf("Size(%d, %v) = %d, %v", tc.size, tc.opt.Options, got, err)
		}
	}
}

func TestResize(t *testing.T) {
	oracle.QemuImg(t)
	tw := newTwin(t, 10<<20, opts("cluster_size", "4K", "table_size", "2"))
	tw.write([]byte("before"), 10<<20-6)
	if err := tw.w.Resize(1<<20, false); !errors.Is(err, disk.ErrShrink) {
		t.Fatalf("shrink without allowShrink: %v", err)
	}
	if err := tw.w.Resize(1<<20, true); !errors.Is(err, disk.ErrUnsupported) {
		t.Fatalf("shrink: %v", err)
	}
	if err := tw.w.Resize(5<<30, false); err == nil {
		t.Fatal("grew beyond what the tables map")
	}
	if err := tw.w.Resize(3<<30+1, false); err != nil {
		t.Fatal(err)
	}
	tw.size = 3<<30 + 512
	if err := tw.raw.Truncate(tw.size); err != nil {
		t.Fatal(err)
	}
	tw.write([]byte("after"), 3<<30-10)
	tw.verify()
	if _, err := tw.w.WriteAt([]byte("x"), 0); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}
}
