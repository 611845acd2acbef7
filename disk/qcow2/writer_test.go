package qcow2

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	osexec "os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// wrTestImage is a qcow2 being written beside a raw file that receives the
// same writes: qemu-img compare then tells whether the qcow2 holds what it
// should.
type wrTestImage struct {
	t       *testing.T
	path    string
	rawPath string
	f       *os.File
	raw     *os.File
	w       disk.Writer
	size    int64
}

func wrNewTestImage(t *testing.T, size, clusterSize int64) *wrTestImage {
	t.Helper()
	dir := t.TempDir()
	ti := &wrTestImage{t: t, path: filepath.Join(dir, "out.qcow2"), rawPath: filepath.Join(dir, "want.raw")}
	var err error
	if ti.f, err = os.Create(ti.path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ti.f.Close() })
	if ti.raw, err = os.Create(ti.rawPath); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ti.raw.Close() })
	if ti.w, err = Create(ti.f, size, clusterOpt(clusterSize)); err != nil {
		t.Fatal(err)
	}
	ti.setSize((size + 511) &^ 511)
	return ti
}

func (ti *wrTestImage) setSize(size int64) {
	ti.t.Helper()
	ti.size = size
	if err := ti.raw.Truncate(size); err != nil {
		ti.t.Fatal(err)
	}
}

func (ti *wrTestImage) write(p []byte, off int64) {
	ti.t.Helper()
	if n, err := ti.w.WriteAt(p, off); err != nil || n != len(p) {
		ti.t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", len(p), off, n, err)
	}
	if _, err := ti.raw.WriteAt(p, off); err != nil {
		ti.t.Fatal(err)
	}
}

func (ti *wrTestImage) resize(size int64, allowShrink bool) {
	ti.t.Helper()
	if err := ti.w.Resize(size, allowShrink); err != nil {
		ti.t.Fatalf("Resize(%d, %v): %v", size, allowShrink, err)
	}
	ti.setSize((size + 511) &^ 511)
}

func (ti *wrTestImage) close() {
	ti.t.Helper()
	if err := ti.w.Close(); err != nil {
		ti.t.Fatalf("Close: %v", err)
	}
}

// verify closes the writer and checks the image with qemu-img (check, info,
// compare with the raw twin) and with our own Check.
func (ti *wrTestImage) verify() oracle.CheckReport {
	ti.t.Helper()
	ti.close()
	oracle.AssertQcow2(ti.t, ti.path, ti.size)
	oracle.AssertSame(ti.t, ti.path, "qcow2", ti.rawPath, "raw")
	return chkAssertAgree(ti.t, ti.path)
}

func wrRandom(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func wrFileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func TestCreateBlank(t *testing.T) {
	oracle.QemuImg(t)
	sizes := []int64{0, 1, 512, 1 << 20, 1<<30 + 1, 20 << 30, 16 << 40}
	clusterSizes := []int64{512, 4 << 10, 64 << 10, 2 << 20}
	for _, cs := range clusterSizes {
		for _, size := range sizes {
			t.Run(fmt.Sprintf("cluster%d/size%d", cs, size), func(t *testing.T) {
				t.Parallel()
				perL1Entry := (cs / 8) * cs
				l1Bytes := (size + perL1Entry - 1) / perL1Entry * 8
				dir := t.TempDir()
				path := filepath.Join(dir, "blank.qcow2")
				f, err := os.Create(path)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				w, err := Create(f, size, clusterOpt(cs))
				// qemu-img create agrees on which sizes are too large.
				qemuPath := filepath.Join(dir, "qemu.qcow2")
				_, _, code := oracle.Run(t, "create", "-q", "-f", "qcow2", "-o", fmt.Sprintf("cluster_size=%d", cs), qemuPath, fmt.Sprint(size))
				if l1Bytes > MaxL1Bytes {
					if err == nil || !errors.Is(err, disk.ErrUnsupported) {
						t.Fatalf("Create: %v, want an ErrUnsupported error (L1 of %d bytes)", err, l1Bytes)
					}
					if code == 0 {
						t.Fatalf("qemu-img create accepted a size we refuse")
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if code != 0 {
					t.Fatalf("qemu-img create refused a size we accept")
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				oracle.AssertQcow2(t, path, (size+511)&^511)
				// Same layout as qemu-img create: same file size.
				if got, want := wrFileSize(t, path), wrFileSize(t, qemuPath); got != want {
					t.Errorf("file size %d, qemu-img create makes %d", got, want)
				}
				// Header, refcount table and block, L1 table: a few hundred
				// KiB, more only where small clusters need a large L1.
				if got, limit := wrFileSize(t, path), 3*cs+l1Bytes*101/100+8*cs; got > limit {
					t.Errorf("file size %d, want at most %d", got, limit)
				}
				r := chkAssertAgree(t, path)
				if r.AllocatedClusters != 0 {
					t.Errorf("blank image has %d allocated clusters", r.AllocatedClusters)
				}
			})
		}
	}
}

func TestCreateOptions(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "x.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, cs := range []int64{256, 3000, 4 << 20, -1} {
		if _, err := Create(f, 1<<20, clusterOpt(cs)); !errors.Is(err, disk.ErrOption) {
			t.Errorf("cluster size %d: %v, want ErrOption", cs, err)
		}
	}
	for _, size := range []int64{-1, MaxVirtualSize + 1} {
		if _, err := Create(f, size, disk.CreateOptions{}); err == nil {
			t.Errorf("size %d accepted", size)
		}
	}
}

// The block size convert detects zeros in is the cluster size Create uses.
func TestBlockSize(t *testing.T) {
	for _, tt := range []struct{ cs, want int64 }{{0, 64 << 10}, {512, 512}, {2 << 20, 2 << 20}, {3000, 64 << 10}} {
		if got := BlockSize(clusterOpt(tt.cs)); got != tt.want {
			t.Errorf("BlockSize(cluster size %d) = %d, want %d", tt.cs, got, tt.want)
		}
	}
}

func TestWritePatterns(t *testing.T) {
	oracle.QemuImg(t)
	for _, cs := range []int64{512, 4 << 10, 64 << 10, 2 << 20} {
		t.Run(fmt.Sprintf("cluster%d", cs), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(uint64(cs), 1))
			const size = 40<<20 + 1000 // not a multiple of the cluster size
			ti := wrNewTestImage(t, size, cs)
			vsize := ti.size
			// Large cluster-aligned chunks in ascending order, as convert
			// writes them, with a gap and a zero cluster in between.
			ti.write(wrRandom(rng, int(4*cs)), 0)
			ti.write(make([]byte, cs), 4*cs) // zeros: skipped
			ti.write(wrRandom(rng, int(3*cs)), 5*cs)
			big := wrRandom(rng, 3<<20)
			copy(big[1<<20:], make([]byte, 64<<10)) // a zero run inside
			ti.write(big, 8<<20)
			// Partial clusters, unaligned, spanning cluster boundaries.
			ti.write(wrRandom(rng, 100), 20<<20+7)
			ti.write(wrRandom(rng, int(cs)+300), 21<<20+int64(cs)/2)
			// Out of order, backwards.
			for i := int64(9); i >= 0; i-- {
				ti.write(wrRandom(rng, int(cs)/2+1), 30<<20+i*(900<<10)+11)
			}
			// Overwrites of allocated clusters, whole and partial, also with zeros.
			ti.write(wrRandom(rng, int(cs)), 0)
			ti.write(make([]byte, 10), 5*cs+3)
			ti.write(make([]byte, cs), 6*cs)
			ti.write(wrRandom(rng, 3000), 8<<20+12345)
			// Random writes all over, and the very end of the disk.
			for range 50 {
				n := rng.Int64N(min(3*cs, 256<<10))
				off := rng.Int64N(vsize - n)
				ti.write(wrRandom(rng, int(n)), off)
			}
			ti.write(wrRandom(rng, 777), vsize-777)
			ti.write(nil, vsize) // empty write at the end is fine
			ti.verify()
		})
	}
}

func TestWriteSkipsZeros(t *testing.T) {
	oracle.QemuImg(t)
	ti := wrNewTestImage(t, 8<<20, 0)
	ti.write(make([]byte, 4<<20), 0)    // whole zero clusters
	ti.write(make([]byte, 1000), 5<<20) // partial zero cluster
	r := ti.verify()
	if r.AllocatedClusters != 0 {
		t.Errorf("zero writes allocated %d clusters", r.AllocatedClusters)
	}
	if got := wrFileSize(t, ti.path); got != 3*65536+8 {
		t.Errorf("file size %d, want a blank image's", got)
	}
}

// TestWriteInOrderIsContiguous: in-order writes lay out data contiguously
// after each L2 table, which is what qemu-img counts as unfragmented.
func TestWriteInOrderIsContiguous(t *testing.T) {
	oracle.QemuImg(t)
	rng := rand.New(rand.NewPCG(7, 7))
	ti := wrNewTestImage(t, 8<<20, 512) // one L2 table maps 32 KiB
	for off := int64(0); off < 8<<20; off += 1 << 20 {
		ti.write(wrRandom(rng, 1<<20), off)
	}
	r := ti.verify()
	if r.FragmentedClusters != 0 || r.AllocatedClusters != 8<<20/512 {
		t.Errorf("allocated %d, fragmented %d; want %d, 0", r.AllocatedClusters, r.FragmentedClusters, 8<<20/512)
	}
}

func TestWriteErrors(t *testing.T) {
	ti := wrNewTestImage(t, 1<<20, 0)
	for _, c := range []struct {
		n   int
		off int64
	}{{1, -1}, {1, 1 << 20}, {2, 1<<20 - 1}, {0, 1<<20 + 1}} {
		if _, err := ti.w.WriteAt(make([]byte, c.n), c.off); err == nil {
			t.Errorf("WriteAt(%d bytes at %d) accepted", c.n, c.off)
		}
	}
	ti.close()
	if _, err := ti.w.WriteAt([]byte{1}, 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("WriteAt after Close: %v", err)
	}
	if err := ti.w.Resize(2<<20, false); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Resize after Close: %v", err)
	}
	if err := ti.w.Close(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
}

func TestResizeGrow(t *testing.T) {
	oracle.QemuImg(t)
	rng := rand.New(rand.NewPCG(3, 4))
	t.Run("in place", func(t *testing.T) {
		// Blank: the L1 table is the last thing in the file, it grows in place.
		ti := wrNewTestImage(t, 1<<30, 0)
		ti.resize(3<<40, false)
		ti.write(wrRandom(rng, 70000), 2<<40+5)
		ti.verify()
	})
	t.Run("relocated", func(t *testing.T) {
		// Data after the L1 table: growing past its cluster moves it.
		ti := wrNewTestImage(t, 1<<30, 0)
		ti.write(wrRandom(rng, 200000), 1<<29-1000)
		before := ti.w.(*wrImage).l1Offset
		ti.resize(8<<40, false) // 16384 L1 entries: more than one cluster
		if after := ti.w.(*wrImage).l1Offset; after == before {
			t.Fatalf("L1 table not moved (still at %#x)", after)
		}
		ti.write(wrRandom(rng, 70000), 8<<40-70000)
		ti.write(wrRandom(rng, 1000), 100)
		ti.verify()
	})
	t.Run("within cluster", func(t *testing.T) {
		ti := wrNewTestImage(t, 1<<20, 0)
		ti.write(wrRandom(rng, 5000), 1<<20-5000)
		ti.resize(100<<30+3, false) // rounded up to 512
		ti.write(wrRandom(rng, 5000), 100<<30-5000)
		ti.verify()
	})
	t.Run("small clusters", func(t *testing.T) {
		ti := wrNewTestImage(t, 1<<20, 512)
		ti.write(wrRandom(rng, 100000), 1000)
		ti.resize(8<<30, false) // L1 of 2 MiB
		ti.write(wrRandom(rng, 100000), 8<<30-100000)
		ti.verify()
	})
}

func TestResizeShrink(t *testing.T) {
	oracle.QemuImg(t)
	rng := rand.New(rand.NewPCG(5, 6))
	t.Run("refused", func(t *testing.T) {
		ti := wrNewTestImage(t, 64<<20, 0)
		err := ti.w.Resize(1<<20, false)
		if !errors.Is(err, disk.ErrShrink) {
			t.Fatalf("Resize: %v, want ErrShrink", err)
		}
		if msg := err.Error(); !strings.Contains(msg, "67108864") || !strings.Contains(msg, "1048576") {
			t.Errorf("error %q should give both sizes", msg)
		}
		ti.verify() // still 64 MiB
	})
	for _, cs := range []int64{512, 64 << 10} {
		t.Run(fmt.Sprintf("cluster%d", cs), func(t *testing.T) {
			ti := wrNewTestImage(t, 64<<20, cs)
			for off := int64(0); off < 64<<20; off += 4 << 20 {
				ti.write(wrRandom(rng, 1<<20+333), off+int64(rng.IntN(1000)))
			}
			// Shrink to a size that cuts a cluster: the raw twin loses the
			// same bytes, and the tail of the kept cluster must read as
			// zeros when the disk grows again.
			ti.resize(10<<20+1000, true)
			if err := ti.raw.Truncate(ti.size); err != nil {
				t.Fatal(err)
			}
			ti.write(wrRandom(rng, 4096), 5<<20)
			ti.resize(20<<20, false)
			ti.write(wrRandom(rng, 100), 15<<20)
			ti.verify()
			info := oracle.ImageInfo(t, ti.path)
			if info.VirtualSize != 20<<20 {
				t.Errorf("virtual size %d", info.VirtualSize)
			}
		})
	}
	t.Run("middle", func(t *testing.T) {
		// Data allocated after the dropped range (out-of-order writes): the
		// dropped clusters stay in the file, free, and must not be leaks.
		ti := wrNewTestImage(t, 2<<30, 0)
		ti.write(wrRandom(rng, 3<<20), 1<<30+7) // the L2 table and data for the upper half
		ti.write(wrRandom(rng, 1<<20), 4096)    // then the lower half
		ti.resize(1<<30, true)
		ti.write(wrRandom(rng, 1<<20), 1<<29)
		ti.verify()
	})
	t.Run("to zero", func(t *testing.T) {
		ti := wrNewTestImage(t, 1<<20, 0)
		ti.write(wrRandom(rng, 1<<20), 0)
		ti.resize(0, true)
		ti.verify()
		if got := wrFileSize(t, ti.path); got > 4*65536 {
			t.Errorf("file size %d after shrinking to 0", got)
		}
	})
}

// TestBoundedMemory: writing across a 16 TiB disk keeps only the L1 table
// (256 KiB here) and a few L2 tables in memory.
func TestBoundedMemory(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "big.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	w, err := Create(f, 16<<40, disk.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 64<<10)
	for i := range data {
		data[i] = byte(i)
	}
	const writes = 256 // each in a different L2 table
	for i := int64(0); i < writes; i++ {
		if _, err := w.WriteAt(data, i*(16<<40/writes)+i*4096); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap growth while writing %d spread clusters of a 16 TiB image: %d KiB", writes, heap>>10)
	if heap > 16<<20 {
		t.Errorf("heap grew by %d bytes", heap)
	}
	if wrHaveQemuImg(t) {
		oracle.AssertQcow2(t, f.Name(), 16<<40)
		chkAssertAgree(t, f.Name())
	}
}

// wrHaveQemuImg reports whether qemu-img is there, without skipping the
// caller (it fails it when GVI_REQUIRE_ORACLE=1 and qemu-img is missing).
func wrHaveQemuImg(t *testing.T) bool {
	if os.Getenv(oracle.RequireEnv) == "1" {
		oracle.QemuImg(t)
		return true
	}
	_, err := osexec.LookPath("qemu-img")
	return err == nil
}

// BenchmarkWriteSequential writes 256 MiB of data in 2 MiB chunks, as the
// converter does; compare with BenchmarkWriteRaw, the same writes to a
// plain file.
func BenchmarkWriteSequential(b *testing.B) { wrBenchWrite(b, false) }

func BenchmarkWriteRaw(b *testing.B) { wrBenchWrite(b, true) }

func wrBenchWrite(b *testing.B, raw bool) {
	const total, chunk = 256 << 20, 2 << 20
	data := make([]byte, chunk)
	for i := range data {
		data[i] = byte(i*7 + 1)
	}
	b.SetBytes(total)
	for b.Loop() {
		f, err := os.Create(filepath.Join(b.TempDir(), "bench"))
		if err != nil {
			b.Fatal(err)
		}
		var w interface {
			WriteAt([]byte, int64) (int, error)
		} = f
		var qw disk.Writer
		if !raw {
			if qw, err = Create(f, total, disk.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
			w = qw
		}
		for off := int64(0); off < total; off += chunk {
			if _, err := w.WriteAt(data, off); err != nil {
				b.Fatal(err)
			}
		}
		if qw != nil {
			if err := qw.Close(); err != nil {
				b.Fatal(err)
			}
		}
		f.Close()
	}
}

// clusterOpt asks for a cluster size (0: the default).
func clusterOpt(cs int64) disk.CreateOptions {
	if cs == 0 {
		return disk.CreateOptions{}
	}
	return disk.CreateOptions{Options: map[string]string{"cluster_size": strconv.FormatInt(cs, 10)}}
}
