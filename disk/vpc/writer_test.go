package vpc

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/libyal"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// options parses "k=v,k=v".
func options(t testing.TB, s string) disk.CreateOptions {
	t.Helper()
	m, err := disk.ParseOptions(s)
	if err != nil {
		t.Fatal(err)
	}
	return disk.CreateOptions{Options: m}
}

// writeImage makes a VHD of content at path with opt, writing it in
// chunks of chunk bytes, in virtual order as the converter does, or last
// chunk first when chunk is negative, and returns the virtual size Size
// announced.
func writeImage(t testing.TB, path string, content []byte, opt disk.CreateOptions, chunk int64) int64 {
	t.Helper()
	vsize, _, err := Size(int64(len(content)), opt)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := Create(f, vsize, opt)
	if err != nil {
		t.Fatal(err)
	}
	n := int64(len(content))
	var offsets []int64
	for off := int64(0); off < n; off += max(chunk, -chunk) {
		offsets = append(offsets, off)
	}
	if chunk < 0 {
		slices.Reverse(offsets)
	}
	for _, off := range offsets {
		if _, err := w.WriteAt(content[off:min(n, off+max(chunk, -chunk))], off); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return vsize
}

// assertOracle checks what every VHD we write must satisfy: qemu-img info
// says vpc, the virtual size and the block size; qemu-img compare finds it
// identical to the raw file raw; our Check finds nothing wrong; libvhdi
// reads the same bytes as our reader.
func assertOracle(t testing.TB, img, raw string, vsize int64, fixed bool) {
	t.Helper()
	q := qemuInfo(t, img)
	wantCluster := int64(DefaultBlockSize)
	if fixed {
		wantCluster = 0
	}
	if q.Format != "vpc" || q.VirtualSize != vsize || q.ClusterSize != wantCluster || q.DirtyFlag {
		t.Fatalf("qemu-img info %+v; want vpc, %d bytes, cluster size %d", q, vsize, wantCluster)
	}
	oracle.AssertSame(t, img, "vpc", raw, "raw")
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	rep, err := Check(f, st.Size())
	if err != nil || !rep.OK() {
		t.Fatalf("Check: %+v, %v", rep, err)
	}
	im, err := Open(f, st.Size(), disk.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if im.Size() != vsize {
		t.Fatalf("we read %d bytes, Size said %d", im.Size(), vsize)
	}
	assertReadsAsQemu(t, im, img)
	if vsize <= 1<<30 { // libvhdi reads every byte
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(im, 0, vsize)); err != nil {
			t.Fatal(err)
		}
		lsize, lsum := libyal.Read(t, "vhdi", img)
		if sum := hex.EncodeToString(h.Sum(nil)); lsize != vsize || lsum != sum {
			t.Fatalf("libvhdi reads %d bytes, sha256 %s; we read %d, %s", lsize, lsum, vsize, sum)
		}
	}
}

// TestWriterOracle: what we write, in each subformat and option and at odd
// sizes, qemu-img and libvhdi read as the raw disk it was written from,
// with the virtual size qemu-img create would have given it.
func TestWriterOracle(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	for _, size := range []int64{1, 511, 512, 1000001, 5<<20 + 3} {
		for _, o := range []string{"", "subformat=fixed", "force_size=on", "subformat=fixed,force_size=on"} {
			t.Run(fmt.Sprintf("%d %s", size, o), func(t *testing.T) {
				opt := options(t, o)
				content := pattern(size, uint64(size))
				raw := filepath.Join(dir, fmt.Sprintf("%d.raw", size))
				if err := os.WriteFile(raw, content, 0o644); err != nil {
					t.Fatal(err)
				}
				img := filepath.Join(dir, fmt.Sprintf("%d-%s.vhd", size, strings.ReplaceAll(o, ",", "-")))
				vsize := writeImage(t, img, content, opt, -640<<10)
				// qemu-img create gives the same virtual size, except
				// that we round a fixed force_size disk up to a MiB.
				ref := filepath.Join(dir, "ref.vhd")
				oracle.MustRun(t, "create", "-q", "-f", "vpc", "-o", "subformat="+cmp(opt.Options["subformat"], "dynamic")+",force_size="+cmp(opt.Options["force_size"], "off"), ref, fmt.Sprint(size))
				want := qemuInfo(t, ref).VirtualSize
				if o == "subformat=fixed,force_size=on" {
					want = (size + 1<<20 - 1) &^ (1<<20 - 1)
				}
				if vsize != want {
					t.Fatalf("virtual size %d; qemu-img create gives %d", vsize, want)
				}
				assertOracle(t, img, raw, vsize, opt.Options["subformat"] == "fixed")
			})
		}
	}
}

func cmp(s, dflt string) string {
	if s == "" {
		return dflt
	}
	return s
}

// TestWriterLargeSparse: a 2040 GiB dynamic disk (the largest VHD) with a
// few sectors of data costs a few MiB and reads back as written, and we
// read qemu-img's; 2 TiB is refused, as qemu-img refuses it.
func TestWriterLargeSparse(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	for _, o := range []string{"force_size=on", ""} {
		opt := options(t, o)
		if _, _, err := Size(2<<40, opt); !errors.Is(err, disk.ErrUnsupported) {
			t.Fatalf("%s: Size(2 TiB) = %v, want ErrUnsupported", o, err)
		}
	}
	opt := options(t, "force_size=on")
	const size = MaxVirtualSize
	img, raw := filepath.Join(dir, "big.vhd"), filepath.Join(dir, "big.raw")
	vsize, _, err := Size(size, opt)
	if err != nil || vsize != size {
		t.Fatalf("Size = %d, %v", vsize, err)
	}
	f, _ := os.Create(img)
	defer f.Close()
	r, _ := os.Create(raw)
	defer r.Close()
	if err := r.Truncate(size); err != nil {
		t.Fatal(err)
	}
	w, err := Create(f, size, opt)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 1 << 40, size - 4096} {
		data := pattern(4096, uint64(off))
		if _, err := w.WriteAt(data, off); err != nil {
			t.Fatal(err)
		}
		r.WriteAt(data, off)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	if st.Size() > 16<<20 {
		t.Fatalf("a sparse 2040 GiB disk takes %d bytes", st.Size())
	}
	assertOracle(t, img, raw, size, false)

	// And the other way: qemu-img's 2040 GiB disk, read by us.
	theirs := filepath.Join(dir, "theirs.vhd")
	oracle.MustRun(t, "convert", "-f", "raw", "-O", "vpc", "-o", "force_size=on", raw, theirs)
	im, err := openFile(t, theirs)
	if err != nil {
		t.Fatal(err)
	}
	if im.Size() != size {
		t.Fatalf("qemu-img's disk reads as %d bytes", im.Size())
	}
	assertReadsAsQemu(t, im, theirs)
	oracle.AssertSame(t, theirs, "vpc", img, "vpc")
}

// TestWriterDeterministic: writing the same disk twice gives the same
// bytes, whatever the size of the writes; SOURCE_DATE_EPOCH sets the
// timestamp; different content gives a different UUID.
func TestWriterDeterministic(t *testing.T) {
	dir := t.TempDir()
	content := pattern(5<<20+3, 9)
	for _, o := range []string{"", "subformat=fixed,force_size=on"} {
		a, b := filepath.Join(dir, "a.vhd"), filepath.Join(dir, "b.vhd")
		writeImage(t, a, content, options(t, o), 1<<20)
		writeImage(t, b, content, options(t, o), 3<<20) // other chunks
		ab, _ := os.ReadFile(a)
		bb, _ := os.ReadFile(b)
		if !bytes.Equal(ab, bb) {
			t.Fatalf("%s: two writes of the same disk differ", o)
		}
		foot := ab[len(ab)-footerSize:]
		if ts := foot[offTimestamp : offTimestamp+4]; !bytes.Equal(ts, []byte{0, 0, 0, 0}) {
			t.Fatalf("timestamp %x without SOURCE_DATE_EPOCH, want 0", ts)
		}
		other := bytes.Clone(content)
		other[2<<20] ^= 1
		writeImage(t, b, other, options(t, o), 1<<20)
		bb, _ = os.ReadFile(b)
		if bytes.Equal(foot[offUUID:offUUID+16], bb[len(bb)-footerSize+offUUID:][:16]) {
			t.Fatalf("%s: different disks got the same UUID", o)
		}
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	a := filepath.Join(dir, "a.vhd")
	writeImage(t, a, content, disk.CreateOptions{}, 1<<20)
	ab, _ := os.ReadFile(a)
	if got := uint32(ab[offTimestamp])<<24 | uint32(ab[offTimestamp+1])<<16 | uint32(ab[offTimestamp+2])<<8 | uint32(ab[offTimestamp+3]); got != 1700000000-timestampBase {
		t.Fatalf("timestamp %d, want SOURCE_DATE_EPOCH - 946684800", got)
	}
}

// TestWriterResize: growing past the room Create reserved for the block
// table moves the table after the blocks; shrinking needs allowShrink and
// discards what lies beyond, also when the disk then grows again.
func TestWriterResize(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	for _, o := range []string{"force_size=on", "subformat=fixed,force_size=on", ""} {
		t.Run(o, func(t *testing.T) {
			opt := options(t, o)
			img, raw := filepath.Join(dir, "r.vhd"), filepath.Join(dir, "r.raw")
			f, err := os.Create(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			w, err := Create(f, 3<<20, opt)
			if err != nil {
				t.Fatal(err)
			}
			first := pattern(3<<20, 1)
			if _, err := w.WriteAt(first, 0); err != nil {
				t.Fatal(err)
			}
			// Grow past the 128 entries (256 MiB) of the reserved table.
			if err := w.Resize(300<<20, false); err != nil {
				t.Fatal(err)
			}
			vsize, _, _ := Size(300<<20, opt)
			if s := decodeOptions(opt); s.fixed && s.forceSize {
				vsize = 300 << 20 // Resize keeps the sector size; Size's MiB is already one
			}
			late := pattern(8192, 2)
			if _, err := w.WriteAt(late, 290<<20); err != nil {
				t.Fatal(err)
			}
			if err := w.Resize(2<<20, false); !errors.Is(err, disk.ErrShrink) {
				t.Fatalf("shrink without allowShrink: %v", err)
			}
			// Shrink to 1.5 MiB and grow back: the tail reads as zeros.
			if err := w.Resize(3<<19, true); err != nil {
				t.Fatal(err)
			}
			if err := w.Resize(300<<20, false); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			_, shrunk := sizedGeometry(3<<19, decodeOptions(opt).forceSize)
			want := make([]byte, vsize)
			copy(want, first[:shrunk])
			if err := os.WriteFile(raw, want, 0o644); err != nil {
				t.Fatal(err)
			}
			assertOracle(t, img, raw, vsize, decodeOptions(opt).fixed)
		})
	}
}
