package qcow2

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/inflate"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
	"github.com/ucphhpc/gen-vm-image-go/internal/testcorpus"
)

// rdTestPatternSize is not a multiple of 64 KiB or 2 MiB, so the last
// cluster of most images is partial.
const rdTestPatternSize = 3<<20 + 64<<10 + 1536

// rdWritePattern writes a raw disk with random regions (incompressible),
// zero regions, repeated text (compressible) and a few scattered sectors.
func rdWritePattern(t *testing.T, path string) []byte {
	t.Helper()
	buf := make([]byte, rdTestPatternSize)
	rng := rand.New(rand.NewPCG(1, 2))
	fillRandom := func(b []byte) {
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
	}
	text := []byte("gen-vm-image qcow2 reader test pattern: the quick brown fox jumps over the lazy dog. ")
	fillText := func(b []byte) {
		for i := 0; i < len(b); i += len(text) {
			copy(b[i:], text)
		}
	}
	fillRandom(buf[0 : 300<<10])   // random, crossing clusters
	fillText(buf[300<<10 : 1<<20]) // compressible
	// [1 MiB, 1.5 MiB) zeros
	fillRandom(buf[3<<19 : 3<<19+5000])    // a short odd-sized run
	fillText(buf[2<<20 : 2<<20+(700<<10)]) // compressible again
	for s := int64(2<<20 + 800<<10); s < 3<<20; s += 37 << 10 {
		fillRandom(buf[s : s+512]) // scattered sectors
	}
	fillText(buf[rdTestPatternSize-3000:]) // up to the last byte
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	return buf
}

// rdOracleRaw converts the image to a (sparse) raw file with qemu-img.
func rdOracleRaw(t *testing.T, img string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "oracle.raw")
	oracle.MustRun(t, "convert", "-U", "-O", "raw", img, out)
	return out
}

// flag is a boolean field of the format-specific information; version 2
// images have no feature bits, which qemu-img then does not show either.
func flag(sp *disk.Specific, key string) bool {
	b, _ := sp.Field(key).(bool)
	return b
}

// fileSize is the size of an open test file.
func fileSize(t testing.TB, f *os.File) int64 {
	t.Helper()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func rdOpenFile(t *testing.T, path string) (disk.Image, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return Open(f, fileSize(t, f), disk.OpenOptions{})
}

// rdQemuIO runs qemu-io commands on an image.
func rdQemuIO(t *testing.T, img string, cmds ...string) {
	t.Helper()
	oracle.QemuImg(t)
	path, err := exec.LookPath("qemu-io")
	if err != nil {
		t.Skip("qemu-io not found")
	}
	args := []string{"-f", "qcow2"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := exec.Command(path, append(args, img)...).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("error")) || bytes.Contains(out, []byte("failed")) {
		t.Fatalf("qemu-io %v: %v\n%s", cmds, err, out)
	}
}

// rdVerifyWhole is the largest virtual size rdVerify reads whole; larger
// images are compared on their data extents only.
const rdVerifyWhole = 64 << 20

// rdVerify checks an image against qemu-img: the extents cover the disk
// exactly, say Data exactly where qemu-img map says data, and Zero extents
// read as zeros; the content equals what qemu-img reads, read whole, and
// concurrently in random chunk order from several goroutines.
func rdVerify(t *testing.T, img string) disk.Image {
	t.Helper()
	rawPath := rdOracleRaw(t, img)
	im, err := rdOpenFile(t, img)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { im.Close() })
	fi, err := os.Stat(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	if im.Size() != fi.Size() {
		t.Fatalf("Size = %d, qemu-img reads %d bytes", im.Size(), fi.Size())
	}
	ext, err := im.Extents(0, im.Size())
	if err != nil {
		t.Fatalf("Extents: %v", err)
	}
	rdCheckExtents(t, im, ext, 0, im.Size())
	rdCompareMap(t, img, ext)

	if im.Size() > rdVerifyWhole {
		// Large and sparse: compare the data extents.
		rf, err := os.Open(rawPath)
		if err != nil {
			t.Fatal(err)
		}
		defer rf.Close()
		got, want := make([]byte, 4<<20), make([]byte, 4<<20)
		for _, e := range ext {
			if e.Zero {
				continue
			}
			for o := e.Offset; o < e.End(); o += int64(len(got)) {
				n := min(int64(len(got)), e.End()-o)
				if _, err := im.ReadAt(got[:n], o); err != nil {
					t.Fatalf("ReadAt(%#x): %v", o, err)
				}
				if _, err := rf.ReadAt(want[:n], o); err != nil {
					t.Fatal(err)
				}
				rdCompare(t, fmt.Sprintf("data extent %+v", e), got[:n], want[:n], o)
			}
		}
		return im
	}

	want, err := os.ReadFile(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, im.Size())
	if n, err := im.ReadAt(got, 0); err != nil || n != len(got) {
		t.Fatalf("ReadAt(whole) = %d, %v", n, err)
	}
	rdCompare(t, "sequential read", got, want, 0)

	// Concurrent reads of odd-sized chunks, in random order.
	const chunk = 37<<10 + 512
	var offs []int64
	for o := int64(0); o < im.Size(); o += chunk {
		offs = append(offs, o)
	}
	rand.Shuffle(len(offs), func(i, j int) { offs[i], offs[j] = offs[j], offs[i] })
	got2 := make([]byte, im.Size())
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < len(offs); i += 4 {
				o := offs[i]
				end := min(o+chunk, im.Size())
				if _, err := im.ReadAt(got2[o:end], o); err != nil {
					errs <- fmt.Errorf("ReadAt(%#x): %w", o, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rdCompare(t, "concurrent read", got2, want, 0)

	// Reading past the end.
	tail := make([]byte, 1024)
	n, err := im.ReadAt(tail, im.Size()-512)
	if n != 512 || err != io.EOF || !bytes.Equal(tail[:512], want[len(want)-512:]) {
		t.Fatalf("ReadAt across the end = %d, %v; want 512, EOF and the last sector", n, err)
	}
	// A window that starts and ends mid-cluster.
	if im.Size() > 100000 {
		ext2, err := im.Extents(12345, im.Size()-50000)
		if err != nil {
			t.Fatalf("Extents(window): %v", err)
		}
		rdCheckExtents(t, im, ext2, 12345, im.Size()-50000)
	}
	return im
}

func rdCompare(t *testing.T, what string, got, want []byte, base int64) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: first difference at virtual offset %#x: got %#x, qemu-img reads %#x", what, base+int64(i), got[i], want[i])
		}
	}
}

// rdCheckExtents: the extents cover [off, off+n) exactly, in order,
// coalesced, and Zero extents read as zeros (the first MiB of each, for
// huge ones).
func rdCheckExtents(t *testing.T, im disk.Image, ext []disk.Extent, off, n int64) {
	t.Helper()
	pos := off
	buf := make([]byte, 1<<20)
	for i, e := range ext {
		if e.Offset != pos || e.Length <= 0 {
			t.Fatalf("extent %d %+v: want offset %#x and positive length", i, e, pos)
		}
		if i > 0 && ext[i-1].Zero == e.Zero && ext[i-1].Compressed == e.Compressed {
			t.Fatalf("extents %d and %d are alike and not coalesced: %+v %+v", i-1, i, ext[i-1], e)
		}
		if e.Zero && e.Compressed {
			t.Fatalf("extent %d is both zero and compressed", i)
		}
		if e.Zero {
			b := buf[:min(e.Length, int64(len(buf)))]
			for j := range b {
				b[j] = 0xee
			}
			if _, err := im.ReadAt(b, e.Offset); err != nil {
				t.Fatalf("ReadAt(Zero extent %+v): %v", e, err)
			}
			if k := bytes.IndexFunc(b, func(r rune) bool { return r != 0 }); k >= 0 {
				t.Fatalf("Zero extent %+v: byte at %#x is not zero", e, e.Offset+int64(k))
			}
		}
		pos = e.End()
	}
	if pos != off+n {
		t.Fatalf("extents end at %#x, want %#x", pos, off+n)
	}
}

// rdCompareMap checks that our extents say Data exactly where
// `qemu-img map` says data.
func rdCompareMap(t *testing.T, img string, ext []disk.Extent) {
	t.Helper()
	out := oracle.MustRun(t, "map", "-U", "--output=json", img)
	var m []struct {
		Start  int64 `json:"start"`
		Length int64 `json:"length"`
		Data   bool  `json:"data"`
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("qemu-img map: %v\n%s", err, out)
	}
	type span struct {
		start, end int64
		data       bool
	}
	merge := func(in []span) []span {
		var o []span
		for _, s := range in {
			if k := len(o) - 1; k >= 0 && o[k].data == s.data && o[k].end == s.start {
				o[k].end = s.end
				continue
			}
			o = append(o, s)
		}
		return o
	}
	var a, b []span
	for _, e := range ext {
		a = append(a, span{e.Offset, e.End(), !e.Zero})
	}
	for _, e := range m {
		b = append(b, span{e.Start, e.Start + e.Length, e.Data})
	}
	a, b = merge(a), merge(b)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("extents differ from qemu-img map:\nours: %v\nqemu: %v", a, b)
	}
}

func TestReaderOracleMatrix(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	raw := filepath.Join(dir, "pattern.raw")
	rdWritePattern(t, raw)
	type variant struct {
		compat      string
		cluster     int
		compression string // "", "zlib", "zstd"
		extendedL2  bool
	}
	var variants []variant
	for _, compat := range []string{"0.10", "1.1"} {
		for _, cluster := range []int{512, 4096, 64 << 10, 2 << 20} {
			for _, comp := range []string{"", "zlib", "zstd"} {
				for _, ext := range []bool{false, true} {
					if comp == "zstd" && compat != "1.1" {
						continue
					}
					if ext && (compat != "1.1" || cluster < 16<<10) {
						continue
					}
					variants = append(variants, variant{compat, cluster, comp, ext})
				}
			}
		}
	}
	for _, v := range variants {
		name := fmt.Sprintf("compat%s-cluster%d-%s-extl2=%v", v.compat, v.cluster, cmp(v.compression, "raw"), v.extendedL2)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			img := filepath.Join(t.TempDir(), "img.qcow2")
			opts := fmt.Sprintf("compat=%s,cluster_size=%d", v.compat, v.cluster)
			if v.extendedL2 {
				opts += ",extended_l2=on"
			}
			if v.compression == "zstd" {
				opts += ",compression_type=zstd"
			}
			args := []string{"convert", "-f", "raw", "-O", "qcow2", "-o", opts}
			if v.compression != "" {
				args = append(args, "-c")
			}
			oracle.MustRun(t, append(args, raw, img)...)
			im := rdVerify(t, img)
			info := im.(disk.Describer).Info()
			sp := info.Specific
			want := oracle.ImageInfo(t, img)
			if info.Format != "qcow2" || info.VirtualSize != want.VirtualSize || info.ClusterSize != want.ClusterSize ||
				sp.Field("compat") != want.Specific.Data.Compat || flag(sp, "extended-l2") != v.extendedL2 ||
				sp.Field("refcount-bits") != want.Specific.Data.RefcountBits || info.Dirty || flag(sp, "corrupt") {
				t.Fatalf("Info = %+v %+v; qemu-img info says %+v", info, sp, want)
			}
			if wantComp := cmp(v.compression, "zlib"); sp.Field("compression-type") != wantComp {
				t.Fatalf("compression type %v, want %q", sp.Field("compression-type"), wantComp)
			}
			if v.compression != "" {
				ext, _ := im.Extents(0, im.Size())
				compressed := false
				for _, e := range ext {
					compressed = compressed || e.Compressed
				}
				if !compressed {
					t.Fatalf("no Compressed extent in a compressed image: %+v", ext)
				}
			}
		})
	}
}

func cmp(s, dflt string) string {
	if s == "" {
		return dflt
	}
	return s
}

// Zero clusters: plain (unmapped) and preallocated (zero flag with a host
// offset), made by qemu-io on a converted image.
func TestReaderZeroClusters(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	raw := filepath.Join(dir, "pattern.raw")
	rdWritePattern(t, raw)
	for _, cluster := range []int{4096, 64 << 10} {
		t.Run(fmt.Sprint(cluster), func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "zero.qcow2")
			oracle.MustRun(t, "convert", "-f", "raw", "-O", "qcow2", "-o", fmt.Sprintf("cluster_size=%d", cluster), raw, img)
			c := cluster
			rdQemuIO(t, img,
				fmt.Sprintf("write -z 0 %d", 2*c),            // allocated -> preallocated zero
				fmt.Sprintf("write -z -u %d %d", 4*c, 2*c),   // allocated -> zero, unmapped
				fmt.Sprintf("write -z %d %d", 1<<20+8*c, c),  // unallocated -> zero
				fmt.Sprintf("write -P 0x5a %d %d", 7*c, c/2), // data next to zeros
				fmt.Sprintf("write -z %d %d", 3<<19, 3*c))    // inside the short random run
			rdVerify(t, img)
			// The image really holds preallocated zero clusters.
			out := oracle.MustRun(t, "map", "--output=json", img)
			if !strings.Contains(out, `"zero": true, "data": false, "offset"`) {
				t.Fatalf("no preallocated zero cluster in the test image:\n%s", out)
			}
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			im, err := Open(f, fileSize(t, f), disk.OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ext, err := im.Extents(0, int64(4*c))
			if err != nil {
				t.Fatal(err)
			}
			if len(ext) != 2 || !ext[0].Zero || ext[0].Length != int64(2*c) || ext[1].Zero {
				t.Fatalf("Extents(0, 4 clusters) = %+v; want a 2-cluster Zero run, then Data", ext)
			}
		})
	}
}

// Extended L2: subclusters allocated, zeroed and left unallocated one by
// one, read and mapped at subcluster granularity.
func TestReaderExtendedL2Subclusters(t *testing.T) {
	oracle.QemuImg(t)
	for _, compat := range []string{"compat=1.1"} {
		img := filepath.Join(t.TempDir(), "sub.qcow2")
		oracle.MustRun(t, "create", "-q", "-f", "qcow2", "-o", compat+",extended_l2=on,cluster_size=64k", img, "4M")
		rdQemuIO(t, img,
			"write -P 0x11 0 4k",       // subclusters 0-1
			"write -P 0x22 10k 6k",     // subclusters 5-7
			"write -z 20k 2k",          // zero bit on an unallocated subcluster
			"write -P 0x33 64k 64k",    // a whole cluster
			"write -z 72k 4k",          // zero bits on allocated subclusters
			"write -P 0x44 1086k 4k",   // across a cluster boundary
			"write -P 0x55 3968k 128k", // the last two clusters
			"write -z -u 4032k 2k")     // unmap a subcluster of the last cluster
		im := rdVerify(t, img)
		ext, err := im.Extents(0, 64<<10)
		if err != nil {
			t.Fatal(err)
		}
		want := []disk.Extent{
			{Offset: 0, Length: 4 << 10},
			{Offset: 4 << 10, Length: 6 << 10, Zero: true},
			{Offset: 10 << 10, Length: 6 << 10},
			{Offset: 16 << 10, Length: 48 << 10, Zero: true},
		}
		if fmt.Sprint(ext) != fmt.Sprint(want) {
			t.Fatalf("Extents(0, 64k) = %+v\nwant %+v", ext, want)
		}
		// A read that starts and ends inside subclusters.
		buf := make([]byte, 7000)
		if _, err := im.ReadAt(buf, 3000); err != nil {
			t.Fatal(err)
		}
		for i, b := range buf {
			want := byte(0)
			switch o := 3000 + i; {
			case o < 4<<10:
				want = 0x11
			case o >= 10<<10:
				want = 0x22
			}
			if b != want {
				t.Fatalf("byte at %#x = %#x, want %#x", 3000+i, b, want)
			}
		}
	}
}

// Internal snapshots: the active state is read, the snapshot only counted.
func TestReaderSnapshot(t *testing.T) {
	oracle.QemuImg(t)
	raw := filepath.Join(t.TempDir(), "pattern.raw")
	rdWritePattern(t, raw)
	for _, compat := range []string{"0.10", "1.1"} {
		t.Run(compat, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "snap.qcow2")
			oracle.MustRun(t, "convert", "-f", "raw", "-O", "qcow2", "-o", "compat="+compat, raw, img)
			oracle.MustRun(t, "snapshot", "-c", "snap1", img)
			rdQemuIO(t, img, "write -P 0x77 0 100k", "write -P 0x78 1100k 64k", "discard 2M 128k")
			oracle.MustRun(t, "snapshot", "-c", "snap2", img)
			rdQemuIO(t, img, "write -P 0x79 50k 20k")
			im := rdVerify(t, img)
			if n := im.(disk.Describer).Info().Snapshots; n != 2 {
				t.Fatalf("Info().Snapshots = %d, want 2", n)
			}
			buf := make([]byte, 1)
			im.ReadAt(buf, 0)
			if buf[0] != 0x77 {
				t.Fatalf("read the snapshot instead of the active layer: byte 0 = %#x", buf[0])
			}
		})
	}
}

// A dirty image (lazy refcounts, writer killed) and a corrupt one read fine
// and say so.
func TestReaderDirtyAndCorrupt(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	raw := filepath.Join(dir, "pattern.raw")
	rdWritePattern(t, raw)

	dirty := filepath.Join(dir, "dirty.qcow2")
	oracle.MustRun(t, "convert", "-f", "raw", "-O", "qcow2", "-o", "lazy_refcounts=on", raw, dirty)
	if _, err := exec.LookPath("qemu-io"); err != nil {
		t.Skip("qemu-io not found")
	}
	cmd := exec.Command("sh", "-c", `ulimit -c 0; exec qemu-io -f qcow2 -c "write -P 0x66 1M 64k" -c abort "$0"`, dirty)
	cmd.Run() // abort: exits by signal, leaving the dirty bit set
	im := rdVerify(t, dirty)
	if info := im.(disk.Describer).Info(); !info.Dirty || !flag(info.Specific, "lazy-refcounts") {
		t.Fatalf("Info = %+v; want Dirty and LazyRefcounts", info)
	}

	corrupt := filepath.Join(dir, "corrupt.qcow2")
	oracle.MustRun(t, "convert", "-f", "raw", "-O", "qcow2", "-c", raw, corrupt)
	rdPatchHeader(t, corrupt, 72, IncompatCorrupt)
	im = rdVerify(t, corrupt)
	if !flag(im.(disk.Describer).Info().Specific, "corrupt") {
		t.Fatal("Info().Corrupt = false")
	}
}

// rdPatchHeader ORs bits into the big-endian uint64 at off.
func rdPatchHeader(t *testing.T, path string, off int64, bits uint64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint64(b[off:], binary.BigEndian.Uint64(b[off:])|bits)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReaderRefusals(t *testing.T) {
	oracle.QemuImg(t)
	t.Parallel() // creating the LUKS image takes seconds (PBKDF benchmark)
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	oracle.MustRun(t, "create", "-q", "-f", "qcow2", base, "1M")

	overlay := filepath.Join(dir, "overlay.qcow2")
	oracle.MustRun(t, "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", overlay)

	dataFile := filepath.Join(dir, "external.qcow2")
	oracle.MustRun(t, "create", "-q", "-f", "qcow2", "-o", "data_file="+filepath.Join(dir, "external.data"), dataFile, "1M")

	luks := filepath.Join(dir, "luks.qcow2")
	oracle.MustRun(t, "create", "-q", "-f", "qcow2", "--object", "secret,id=sec0,data=abc",
		"-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10", luks, "1M")

	aes := filepath.Join(dir, "aes.qcow2")
	oracle.MustRun(t, "create", "-q", "-f", "qcow2", "--object", "secret,id=sec0,data=abc",
		"-o", "encrypt.format=aes,encrypt.key-secret=sec0", aes, "1M")

	unknown := filepath.Join(dir, "unknown.qcow2")
	oracle.MustRun(t, "create", "-q", "-f", "qcow2", unknown, "1M")
	rdPatchHeader(t, unknown, 72, 1<<5|1<<40)

	v1 := filepath.Join(dir, "v1.qcow")
	oracle.MustRun(t, "create", "-q", "-f", "qcow", v1, "1M")

	tests := []struct {
		name string
		path string
		want error
		says []string
	}{
		{"backing", overlay, disk.ErrUnsafe, []string{"backing file", base, "overlay", "backing chain"}},
		{"data file", dataFile, disk.ErrUnsafe, []string{"external data file", "external.data"}},
		{"luks", luks, disk.ErrUnsupported, []string{"encrypted", "LUKS"}},
		{"aes", aes, disk.ErrUnsupported, []string{"encrypted", "AES"}},
		{"unknown feature", unknown, disk.ErrUnsupported, []string{"5, 40", "unknown incompatible feature"}},
		{"qcow version 1", v1, disk.ErrUnsupported, []string{"version 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rdOpenFile(t, tt.path)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open = %v; want an error wrapping %v", err, tt.want)
			}
			for _, s := range tt.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			// Inspect still describes what Open refuses (except what
			// is not qcow2 at all), and refuses it the same way.
			if tt.name == "qcow version 1" {
				return
			}
			f, _ := os.Open(tt.path)
			defer f.Close()
			facts, ierr := Inspect(f, fileSize(t, f), disk.Limits{})
			info := facts.Info
			if info.Format != "qcow2" || ierr == nil || ierr.Error() != err.Error() {
				t.Fatalf("Inspect = %+v, %v; want the header described and Open's refusal %v", info, ierr, err)
			}
			switch tt.name {
			case "backing":
				if info.BackingFile != base || info.BackingFormat != "qcow2" {
					t.Errorf("Inspect = %+v; want backing %s (qcow2)", info, base)
				}
			case "data file":
				if name, _ := info.Specific.Field("data-file").(string); !strings.HasSuffix(name, "external.data") {
					t.Errorf("Inspect = %+v; want the data file", info)
				}
			case "luks", "aes":
				if !info.Encrypted {
					t.Errorf("Inspect = %+v; want Encrypted", info)
				}
			}
		})
	}
}

// Hand-made damage to a valid image: each must fail Open or the read with
// an ErrFormat that says what and where.
func TestReaderMalformed(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	raw := filepath.Join(dir, "pattern.raw")
	rdWritePattern(t, raw)
	base := filepath.Join(dir, "base.qcow2")
	oracle.MustRun(t, "convert", "-f", "raw", "-O", "qcow2", raw, base)
	zbase := filepath.Join(dir, "zbase.qcow2")
	oracle.MustRun(t, "convert", "-c", "-f", "raw", "-O", "qcow2", raw, zbase)

	type layout struct {
		b    []byte
		h    *Header
		l1   int64 // host offset of L1
		l2   int64 // host offset of the first L2 table
		data int64 // L2 entry of cluster 0
		text int64 // L2 entry of cluster 5 (compressible text)
	}
	load := func(path string) layout {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		h, err := ParseHeader(b, int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		l1 := int64(h.L1TableOffset)
		l2 := int64(binary.BigEndian.Uint64(b[l1:]) & L1OffsetMask)
		return layout{b, h, l1, l2, int64(binary.BigEndian.Uint64(b[l2:])), int64(binary.BigEndian.Uint64(b[l2+40:]))}
	}
	put := func(b []byte, off int64, v uint64) { binary.BigEndian.PutUint64(b[off:], v) }
	tests := []struct {
		name   string
		base   string
		damage func(l layout) []byte
		says   string
	}{
		{"L2 table beyond EOF", base, func(l layout) []byte {
			put(l.b, l.l1, EntryCopied|uint64(len(l.b)+1<<20)&^0xffff)
			return l.b
		}, "lies beyond the end of the file"},
		{"L2 table unaligned", base, func(l layout) []byte { put(l.b, l.l1, uint64(l.l2+512)); return l.b }, "not cluster aligned"},
		{"L1 reserved bits", base, func(l layout) []byte { put(l.b, l.l1, uint64(l.l2)|1<<60); return l.b }, "reserved bits"},
		{"L2 reserved bits", base, func(l layout) []byte { put(l.b, l.l2, uint64(l.data)|1<<3); return l.b }, "reserved bits"},
		{"data beyond EOF", base, func(l layout) []byte { put(l.b, l.l2, EntryCopied|1<<40); return l.b }, "data cluster at host offset 0x10000000000 lies beyond"},
		{"data unaligned", base, func(l layout) []byte { put(l.b, l.l2, uint64(l.data)+4096); return l.b }, "not cluster aligned"},
		{"compressed beyond EOF", zbase, func(l layout) []byte {
			put(l.b, l.l2, EntryCompressed|uint64(len(l.b)+4096))
			return l.b
		}, "compressed data at host offset"},
		{"compressed garbage", zbase, func(l layout) []byte {
			off := int64(uint64(l.text) & (1<<54 - 1))
			for i := off; i < off+64; i++ {
				l.b[i] = 0xff
			}
			return l.b
		}, "compressed cluster for virtual offset 0x50000"},
		{"L1 beyond EOF", base, func(l layout) []byte { return l.b[:l.l1+4] }, "L1 table"},
		{"truncated L2", base, func(l layout) []byte { return l.b[:l.l2+100] }, "L2 table for virtual offset 0x0"},
		{"snapshot table overlaps header", base, func(l layout) []byte {
			binary.BigEndian.PutUint32(l.b[60:], 65536)
			return l.b
		}, "snapshot table"},
	}
	// Damaged compressed data also keeps the codec's error class.
	causes := map[string]error{"compressed garbage": inflate.ErrBlockType}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := load(tt.base)
			b := tt.damage(l)
			im, err := Open(bytes.NewReader(b), int64(len(b)), disk.OpenOptions{})
			if err == nil {
				_, err = im.Extents(0, im.Size())
				if err == nil {
					buf := make([]byte, im.Size())
					_, err = im.ReadAt(buf, 0)
				}
			}
			if !errors.Is(err, disk.ErrFormat) {
				t.Fatalf("got %v; want an ErrFormat", err)
			}
			if !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("error %q does not say %q", err, tt.says)
			}
			if cause := causes[tt.name]; cause != nil && !errors.Is(err, cause) {
				t.Fatalf("got %v; want it to wrap %v", err, cause)
			}
		})
	}
}

// The real images of ../shared/corpus.
func TestReaderCorpus(t *testing.T) {
	dir := testcorpus.Dir(t)
	entries := testcorpus.Manifest(t)
	oracle.QemuImg(t)
	seen := 0
	for _, e := range entries {
		if e.NotKept {
			continue
		}
		path := filepath.Join(dir, e.File)
		head := make([]byte, 4)
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		_, err = io.ReadFull(f, head)
		f.Close()
		if err != nil || binary.BigEndian.Uint32(head) != Magic {
			continue
		}
		seen++
		t.Run(e.File, func(t *testing.T) {
			info, _ := os.Stat(path)
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			facts, _ := Inspect(f, fileSize(t, f), disk.Limits{})
			hinfo := facts.Info
			switch {
			case e.Malformed() || hinfo.BackingFile != "":
				im, err := Open(f, fileSize(t, f), disk.OpenOptions{})
				if err == nil {
					err = rdReadAll(im)
					im.Close()
				}
				if err == nil {
					t.Fatalf("%s (%s) opened and read without error", e.File, e.Notes)
				}
				if hinfo.BackingFile != "" && !errors.Is(err, disk.ErrUnsafe) {
					t.Fatalf("overlay: got %v; want ErrUnsafe", err)
				}
				t.Logf("refused: %v", err)
			case e.QemuFormat == "qcow2":
				if info.Size() > 64<<20 {
					t.Skip("large")
				}
				rdVerify(t, path)
			default:
				t.Skipf("qemu-img says %q", e.QemuFormat)
			}
		})
	}
	if seen == 0 {
		t.Skip("no qcow2 files in the corpus")
	}
}

// rdReadAll reads every Data extent of an image (bounded, for hostile
// images: at most 64 MiB of virtual disk).
func rdReadAll(im disk.Image) error {
	ext, err := im.Extents(0, min(im.Size(), 64<<20))
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for _, e := range ext {
		for o := e.Offset; o < e.End(); o += int64(len(buf)) {
			n := min(int64(len(buf)), e.End()-o)
			if _, err := im.ReadAt(buf[:n], o); err != nil {
				return err
			}
		}
	}
	return nil
}

// The hand-made extended L2 image of the fuzz seeds reads as qemu reads it.
func TestReaderHandmadeExtendedL2(t *testing.T) {
	oracle.QemuImg(t)
	img := filepath.Join(t.TempDir(), "handmade.qcow2")
	if err := os.WriteFile(img, rdSeedExtendedL2(), 0o644); err != nil {
		t.Fatal(err)
	}
	rdVerify(t, img)
}
