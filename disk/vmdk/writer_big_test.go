package vmdk

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// writes is data at virtual offsets, for a writer and a raw twin.
type writes map[int64][]byte

func (ws writes) raw(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for off, b := range ws {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTwoTiB: 2 TiB sparse images, in both subformats, with data at the
// start, the middle and the last bytes; qemu-img checks and compares them
// with a sparse raw twin, and we read them back.
func TestTwoTiB(t *testing.T) {
	oracle.QemuImg(t)
	const size = 2 << 40
	// Constant runs, so that qemu-io can verify them: qemu-img compare and
	// map walk 2 TiB a grain at a time (minutes).
	ws := writes{0: bytes.Repeat([]byte{0x11}, 200_000), 1 << 40: bytes.Repeat([]byte{0x22}, 70_000), size - 1000: bytes.Repeat([]byte{0x33}, 1000)}
	order := []int64{0, 1 << 40, size - 1000}
	var reads []string // qemu-io commands: each run and the zeros around it
	for _, off := range order {
		n := int64(len(ws[off]))
		reads = append(reads, "-c", fmt.Sprintf("read -P %#x %d %d", ws[off][0], off, n))
		if off > 0 {
			reads = append(reads, "-c", fmt.Sprintf("read -P 0 %d 512", off-512))
		}
		if off+n < size {
			reads = append(reads, "-c", fmt.Sprintf("read -P 0 %d %d", off+n, 512-n%512))
		}
	}
	for _, opt := range []disk.CreateOptions{{}, {Compress: true}} {
		dir := t.TempDir()
		raw := filepath.Join(dir, "twin.raw")
		ws.raw(t, raw, size)
		out := filepath.Join(dir, "big.vmdk")
		f, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		w, err := Create(f, size, opt)
		if err != nil {
			t.Fatal(err)
		}
		for _, off := range order {
			if _, err := w.WriteAt(ws[off], off); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if r, code := oracle.Check(t, out, "vmdk"); code != 0 || r.CheckErrors != 0 || r.Corruptions != 0 {
			t.Fatalf("qemu-img check: %d %+v", code, r)
		}
		qemuIO(t, append(append([]string{"-f", "vmdk"}, reads...), out)...)
		im, done := openFile(t, out)
		sameAsRaw(t, im, raw)
		done()
	}
	// What qemu-img makes at 2 TiB reads as zeros, without reading 2 TiB.
	dir := t.TempDir()
	for _, sub := range []string{"monolithicSparse", "streamOptimized"} {
		p := filepath.Join(dir, sub+".vmdk")
		oracle.MustRun(t, "create", "-q", "-f", "vmdk", "-o", "subformat="+sub, p, "2T")
		im, done := openFile(t, p)
		exts, err := im.Extents(0, im.Size())
		if err != nil || im.Size() != size || len(exts) != 1 || !exts[0].Zero {
			t.Fatalf("%s: size %d, extents %v %v", sub, im.Size(), exts, err)
		}
		done()
	}
}

// qemuIO runs qemu-io (qemu-img's companion, in the same package) and
// fails on a pattern that does not verify.
func qemuIO(t *testing.T, args ...string) {
	t.Helper()
	oracle.QemuImg(t)
	out, err := exec.Command("qemu-io", args...).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("failed")) {
		t.Fatalf("qemu-io %v: %v\n%s", args, err, out)
	}
}

// TestResize: grow past the grain tables reserved at Create and shrink,
// as qemu-img resize does.
func TestResize(t *testing.T) {
	oracle.QemuImg(t)
	for _, opt := range []disk.CreateOptions{{}, {Compress: true}} {
		dir := t.TempDir()
		out := filepath.Join(dir, "r.vmdk")
		f, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		w, err := Create(f, 3<<20, opt)
		if err != nil {
			t.Fatal(err)
		}
		a, b := pattern(3<<20, 5), pattern(1<<20, 6)
		if _, err := w.WriteAt(a, 0); err != nil {
			t.Fatal(err)
		}
		if err := w.Resize(1<<20, false); !errors.Is(err, disk.ErrShrink) {
			t.Fatalf("shrink without allowShrink: %v", err)
		}
		final := int64(100<<20 + 1000)
		if opt.Compress {
			// A stream is written once: it cannot shrink below what it
			// stored, and grows.
			if err := w.Resize(1<<20, true); err == nil {
				t.Fatal("a stream shrank below its data")
			}
			if err := w.Resize(final, false); err != nil {
				t.Fatal(err)
			}
			if _, err := w.WriteAt(b, 64<<20); err != nil {
				t.Fatal(err)
			}
		} else {
			// Shrink to an odd size, then grow past the reserved tables.
			if err := w.Resize(1<<20+1000, true); err != nil {
				t.Fatal(err)
			}
			clear(a[1<<20+1024:])
			if err := w.Resize(final, false); err != nil {
				t.Fatal(err)
			}
			if _, err := w.WriteAt(b, 64<<20); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		ws := writes{0: a, 64 << 20: b}
		raw := filepath.Join(dir, "twin.raw")
		want := (final + 511) / 512 * 512
		ws.raw(t, raw, want)
		assertGood(t, out, raw, want, map[bool]string{false: "monolithicSparse", true: "streamOptimized"}[opt.Compress])
	}
}
