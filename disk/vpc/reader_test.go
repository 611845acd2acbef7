package vpc

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
	"github.com/ucphhpc/gen-vm-image-go/internal/testcorpus"
)

// pattern is a raw disk of n bytes with random runs, zero runs and
// scattered sectors, so that some blocks are allocated and some are not.
func pattern(n int64, seed uint64) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, 7))
	fill := func(lo, hi int64) {
		for i := max(lo, 0); i < min(hi, n); i++ {
			b[i] = byte(rng.Uint32())
		}
	}
	fill(0, 300<<10)
	fill(n/2, n/2+5000)
	for s := int64(2<<20 + 800<<10); s < n; s += 1 << 20 {
		fill(s, s+512)
	}
	fill(n-3000, n)
	return b
}

// openFile opens path with Open.
func openFile(t testing.TB, path string) (disk.Image, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return Open(f, st.Size(), disk.OpenOptions{})
}

// readAll reads the whole virtual disk, in odd-sized pieces that cross
// block boundaries.
func readAll(t testing.TB, im disk.Image) []byte {
	t.Helper()
	out := make([]byte, im.Size())
	for off := int64(0); off < im.Size(); off += 777 << 10 {
		n := min(777<<10, im.Size()-off)
		if _, err := im.ReadAt(out[off:off+n], off); err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("ReadAt(%d, %d): %v", n, off, err)
		}
	}
	return out
}

// checkExtents checks that Extents covers the disk exactly and that its
// zero runs read as zeros.
func checkExtents(t testing.TB, im disk.Image, content []byte) {
	t.Helper()
	ext, err := im.Extents(0, im.Size())
	if err != nil {
		t.Fatal(err)
	}
	pos := int64(0)
	for _, e := range ext {
		if e.Offset != pos || e.Length <= 0 {
			t.Fatalf("extents %v do not cover the disk in order at %d", ext, pos)
		}
		if e.Zero && !bytes.Equal(content[e.Offset:e.End()], make([]byte, e.Length)) {
			t.Fatalf("zero extent %+v holds data", e)
		}
		pos = e.End()
	}
	if pos != im.Size() {
		t.Fatalf("extents end at %d, the disk at %d", pos, im.Size())
	}
}

// qemuInfo is qemu-img info on a VHD, named as one (qemu-img probes a
// fixed VHD as raw).
func qemuInfo(t testing.TB, img string) oracle.Info {
	t.Helper()
	var q oracle.Info
	if err := json.Unmarshal([]byte(oracle.MustRun(t, "info", "-f", "vpc", "--output=json", img)), &q); err != nil {
		t.Fatal(err)
	}
	return q
}

// assertReadsAsQemu writes what we read of im as a sparse raw file (its
// data extents only, after checking that they and the zero extents cover
// the disk) and has qemu-img compare it with img, the VHD im was opened
// from: the two read the same whatever the virtual size, in little memory.
func assertReadsAsQemu(t testing.TB, im disk.Image, img string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "ours.raw")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(im.Size()); err != nil {
		t.Fatal(err)
	}
	ext, err := im.Extents(0, im.Size())
	if err != nil {
		t.Fatal(err)
	}
	pos := int64(0)
	buf := make([]byte, 4<<20)
	for _, e := range ext {
		if e.Offset != pos || e.Length <= 0 {
			t.Fatalf("extents %v do not cover the disk in order at %d", ext, pos)
		}
		for off := e.Offset; off < e.End(); {
			n := min(int64(len(buf)), e.End()-off)
			if _, err := im.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
				t.Fatalf("ReadAt(%d, %d): %v", n, off, err)
			}
			if e.Zero && !bytes.Equal(buf[:n], make([]byte, n)) {
				t.Fatalf("zero extent %+v holds data", e)
			}
			if !e.Zero {
				if _, err := f.WriteAt(buf[:n], off); err != nil {
					t.Fatal(err)
				}
			}
			off += n
			if e.Zero && e.Length > 64<<20 {
				break // a huge hole: its start is enough
			}
		}
		pos = e.End()
	}
	if pos != im.Size() {
		t.Fatalf("extents end at %d, the disk at %d", pos, im.Size())
	}
	oracle.AssertSame(t, img, "vpc", out, "raw")
}

// TestReaderOracle: what qemu-img writes, in each subformat and at odd
// sizes, we read as qemu-img reads it, with its virtual size and cluster
// size.
func TestReaderOracle(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	for _, size := range []int64{1, 511, 512, 1000001, 5<<20 + 3} {
		for _, o := range []string{"subformat=dynamic", "subformat=fixed", "subformat=dynamic,force_size=on", "subformat=fixed,force_size=on"} {
			t.Run(fmt.Sprintf("%d %s", size, o), func(t *testing.T) {
				src := filepath.Join(dir, fmt.Sprintf("src-%d.raw", size))
				if err := os.WriteFile(src, pattern(size, uint64(size)), 0o644); err != nil {
					t.Fatal(err)
				}
				img := filepath.Join(dir, fmt.Sprintf("%d-%s.vhd", size, strings.ReplaceAll(o, ",", "-")))
				oracle.MustRun(t, "convert", "-f", "raw", "-O", "vpc", "-o", o, src, img)
				q := qemuInfo(t, img)
				im, err := openFile(t, img)
				if err != nil {
					t.Fatal(err)
				}
				info := im.(disk.Describer).Info()
				if info.Format != "vpc" || im.Size() != q.VirtualSize || info.ClusterSize != q.ClusterSize {
					t.Fatalf("Info %+v, size %d; qemu-img info %+v", info, im.Size(), q)
				}
				got := readAll(t, im)
				if src := pattern(size, uint64(size)); !bytes.Equal(got[:min(len(got), len(src))], src[:min(len(got), len(src))]) {
					t.Fatal("the disk does not read as the raw file it was converted from")
				}
				checkExtents(t, im, got)
				assertReadsAsQemu(t, im, img)
			})
		}
	}
}

// vhdNote finds the corpus files the manifest describes as VHDs.
var vhdNote = regexp.MustCompile(`\bVHD\b`)

// TestReaderCorpus: the corpus's VHD files made by Windows, Hyper-V,
// Virtual PC, Disk2vhd and qemu read as qemu-img reads them; the
// malformed ones and the differencing one are refused cleanly.
func TestReaderCorpus(t *testing.T) {
	oracle.QemuImg(t)
	seen := 0
	for _, e := range testcorpus.Manifest(t) {
		isVHD := strings.HasSuffix(e.File, ".vhd") || (vhdNote.MatchString(e.Notes) && !strings.Contains(e.File, ".vhdx"))
		if !isVHD || strings.HasSuffix(e.File, ".bz2") {
			continue
		}
		path, ok := testcorpus.Path(t, e, 1<<30)
		if !ok {
			continue
		}
		seen++
		t.Run(e.File, func(t *testing.T) {
			im, err := openFile(t, path)
			if e.Malformed() || strings.Contains(e.Notes, "DIFFERENCING") {
				if err == nil {
					t.Fatalf("Open accepted a file the manifest says is %s", e.Notes)
				}
				if !errors.Is(err, disk.ErrFormat) && !errors.Is(err, disk.ErrUnsafe) && !errors.Is(err, disk.ErrUnsupported) && !errors.Is(err, disk.ErrLimit) {
					t.Fatalf("refused without a class: %v", err)
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			q := qemuInfo(t, path)
			if im.Size() != q.VirtualSize || im.(disk.Describer).Info().ClusterSize != q.ClusterSize {
				t.Fatalf("size %d, info %+v; qemu-img info %+v", im.Size(), im.(disk.Describer).Info(), q)
			}
			assertReadsAsQemu(t, im, path)
		})
	}
	if seen == 0 {
		t.Skip("no VHD files in the corpus")
	}
}

// TestReaderMalformed: damaged and hostile disks fail cleanly, each with
// its class of error, before anything is allocated for them.
func TestReaderMalformed(t *testing.T) {
	be := binary.BigEndian
	// patch returns the hand-made dynamic disk with f applied and every
	// checksum fixed up again.
	patch := func(f func(b []byte)) []byte {
		b := seedSmallBlocks()
		f(b)
		for _, at := range []int{0, len(b) - footerSize} {
			be.PutUint32(b[at+offChecksum:], Checksum(b[at:at+footerSize], offChecksum))
		}
		be.PutUint32(b[footerSize+offDynChecksum:], Checksum(b[footerSize:footerSize+dynHeaderSize], offDynChecksum))
		return b
	}
	// both applies f to the footer copy at 0 and to the footer at the end.
	both := func(f func(footer []byte)) func(b []byte) {
		return func(b []byte) { f(b); f(b[len(b)-footerSize:]) }
	}
	tests := []struct {
		name  string
		image []byte
		class error
		msg   string
	}{
		{"bad footer checksum", func() []byte { b := seedSmallBlocks(); b[offUUID] ^= 1; return b }(), disk.ErrFormat, "checksum"},
		{"bad header checksum", func() []byte { b := seedSmallBlocks(); b[footerSize+100] ^= 1; return b }(), disk.ErrFormat, "checksum"},
		{"block past the end", patch(func(b []byte) { be.PutUint32(b[1536+8:], uint32(len(b)/512)) }), disk.ErrFormat, "truncated"},
		{"table past the end", patch(func(b []byte) { be.PutUint64(b[footerSize+offDynTableOffset:], uint64(len(b))) }), disk.ErrFormat, "past the end"},
		{"table too small", patch(func(b []byte) { be.PutUint32(b[footerSize+offDynMaxEntries:], 2) }), disk.ErrFormat, "covers less"},
		{"table too large", patch(func(b []byte) { be.PutUint32(b[footerSize+offDynMaxEntries:], 0x40000001) }), disk.ErrLimit, ""},
		{"block size not a power of two", patch(func(b []byte) { be.PutUint32(b[footerSize+offDynBlockSize:], 3000) }), disk.ErrFormat, "block size"},
		{"header beyond the file", patch(both(func(f []byte) { be.PutUint64(f[offDataOffset:], 1<<40) })), disk.ErrFormat, "beyond"},
		{"footers disagree", patch(func(b []byte) { be.PutUint64(b[offCurrentSize:], 4096) }), disk.ErrUnsafe, "disagree"},
		{"differencing", patch(both(func(f []byte) { be.PutUint32(f[offDiskType:], diskDifferencing) })), disk.ErrUnsafe, "differencing"},
		{"unknown type", patch(both(func(f []byte) { be.PutUint32(f[offDiskType:], 7) })), disk.ErrUnsupported, "disk type"},
		{"beyond 2040 GiB", patch(both(func(f []byte) { be.PutUint64(f[offCurrentSize:], 3<<40) })), disk.ErrUnsupported, "2040 GiB"},
		{"fixed larger than the file", func() []byte {
			b := seedFixed()
			be.PutUint16(b[len(b)-footerSize+offCylinders:], 100) // "qemu": sized by its geometry
			be.PutUint32(b[len(b)-footerSize+offChecksum:], Checksum(b[len(b)-footerSize:], offChecksum))
			return b
		}(), disk.ErrFormat, "does not fit"},
		{"no footer", make([]byte, 4096), disk.ErrFormat, "no VHD footer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(bytes.NewReader(tt.image), int64(len(tt.image)), disk.OpenOptions{})
			if !errors.Is(err, tt.class) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Open: %v; want %v and %q", err, tt.class, tt.msg)
			}
			if _, err := Inspect(bytes.NewReader(tt.image), int64(len(tt.image)), disk.Limits{}); err == nil && tt.name != "block past the end" {
				t.Fatalf("Inspect accepts it")
			}
		})
	}
}
