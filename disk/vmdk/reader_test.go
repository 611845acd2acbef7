package vmdk

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
	"github.com/ucphhpc/gen-vm-image-go/internal/testcorpus"
)

// TestReadQemuImages: what qemu-img writes, in each subformat and at odd
// sizes, reads back as the raw file it was converted from.
func TestReadQemuImages(t *testing.T) {
	oracle.QemuImg(t)
	sizes := []int64{1, 511, 512, 65536 + 512, 3<<20 + 4096 + 17}
	for _, sub := range []string{"monolithicSparse", "streamOptimized"} {
		for _, n := range sizes {
			t.Run(sub+"/"+itoa(n), func(t *testing.T) {
				dir := t.TempDir()
				data := pattern(n, uint64(n))
				raw := writeRaw(t, dir, "in.raw", data)
				out := filepath.Join(dir, "out.vmdk")
				oracle.MustRun(t, "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat="+sub, raw, out)
				im, done := openFile(t, out)
				defer done()
				// qemu rounds the size up to a sector.
				want := append(data, make([]byte, (512-n%512)%512)...)
				if im.Size() != int64(len(want)) {
					t.Fatalf("size %d, want %d", im.Size(), len(want))
				}
				if got := digest(t, im); got != sum(want) {
					t.Fatal("content differs from the source")
				}
			})
		}
	}
}

func itoa(n int64) string { return strings.TrimSpace(strings.Replace(fmtInt(n), " ", "", -1)) }

func fmtInt(n int64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// TestCorpus: the corpus's VMDK files read as qemu-img reads them (its raw
// conversion); those qemu-img cannot open fail cleanly here too.
func TestCorpus(t *testing.T) {
	oracle.QemuImg(t)
	for _, e := range testcorpus.Manifest(t) {
		isVMDK := strings.HasSuffix(e.File, ".vmdk") || strings.Contains(e.Notes, "VMDK")
		if e.NotKept || !isVMDK || strings.HasSuffix(e.File, ".bz2") {
			continue
		}
		t.Run(e.File, func(t *testing.T) {
			path, ok := testcorpus.Path(t, e, 64<<20)
			if !ok {
				t.Skip("not in the corpus")
			}
			f, size := openRaw(t, path)
			defer f.Close()
			im, err := Open(f, size, disk.OpenOptions{})
			if e.QemuFormat != "vmdk" {
				if err == nil {
					_, err = im.Extents(0, im.Size())
				}
				if err == nil {
					t.Fatalf("qemu-img cannot open it (%s) but we can", e.QemuFormat)
				}
				if !classified(err) {
					t.Fatalf("error of no class: %v", err)
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			raw := filepath.Join(t.TempDir(), "out.raw")
			oracle.MustRun(t, "convert", "-f", "vmdk", "-O", "raw", path, raw)
			sameAsRaw(t, im, raw)
			exts, err := im.Extents(0, im.Size())
			if err != nil || len(exts) == 0 || exts[len(exts)-1].End() != im.Size() {
				t.Fatalf("Extents: %v %v", exts, err)
			}
		})
	}
}
