package vmdk

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
	"github.com/ucphhpc/gen-vm-image-go/internal/libyal"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// writeLikeConvert writes data as the converter does: in increasing
// order, in chunks, leaving out the grains of zeros.
func writeLikeConvert(t testing.TB, w disk.Writer, data []byte) {
	t.Helper()
	const chunk = 512 << 10
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		for b := off; b < end; b += wrGrainBytes {
			be := min(b+wrGrainBytes, end)
			if blockio.IsZero(data[b:be]) {
				continue
			}
			if _, err := w.WriteAt(data[b:be], int64(b)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// compressLikeConvert drives a Compressor as the converter does:
// grains compressed on several goroutines, stored in order.
func compressLikeConvert(t testing.TB, c disk.Compressor, data []byte) {
	t.Helper()
	unit := int(c.CompressUnit())
	var offs []int
	for off := 0; off < len(data); off += unit {
		if !blockio.IsZero(data[off:min(off+unit, len(data))]) {
			offs = append(offs, off)
		}
	}
	stored := make([][]byte, len(offs))
	errs := make([]error, len(offs))
	var wg sync.WaitGroup
	for i, off := range offs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stored[i], errs[i] = c.Compress(int64(off), data[off:min(off+unit, len(data))])
		}()
	}
	wg.Wait()
	for i, off := range offs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if err := c.WriteStored(int64(off), stored[i]); err != nil {
			t.Fatal(err)
		}
	}
}

// makeVMDK writes data into a new VMDK at path with opt; compressor
// drives the Compressor instead of WriteAt.
func makeVMDK(t testing.TB, path string, data []byte, size int64, opt disk.CreateOptions, compressor bool) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := Create(f, size, opt)
	if err != nil {
		t.Fatal(err)
	}
	if compressor {
		c, ok := w.(disk.Compressor)
		if !ok {
			t.Fatal("not a Compressor")
		}
		compressLikeConvert(t, c, data)
	} else {
		writeLikeConvert(t, w, data)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// assertGood: qemu-img check finds no errors, qemu-img and libvmdk read
// the content of raw, our Check agrees, and so does our reader.
func assertGood(t *testing.T, path, raw string, size int64, createType string) {
	t.Helper()
	if r, code := oracle.Check(t, path, "vmdk"); code != 0 || r.CheckErrors != 0 || r.Corruptions != 0 {
		out, _, _ := oracle.Run(t, "check", path)
		t.Fatalf("qemu-img check: exit %d %+v\n%s", code, r, out)
	}
	out := oracle.MustRun(t, "info", "--output=json", path)
	if !bytes.Contains([]byte(out), []byte(`"create-type": "`+createType+`"`)) {
		t.Fatalf("qemu-img info: %s", out)
	}
	if info := oracle.ImageInfo(t, path); info.Format != "vmdk" || info.VirtualSize != size {
		t.Fatalf("qemu-img info: %+v, want vmdk of %d bytes", info, size)
	}
	oracle.AssertSame(t, path, "vmdk", raw, "raw")
	f, n := openRaw(t, path)
	defer f.Close()
	rep, err := Check(f, n)
	if err != nil || !rep.OK() {
		t.Fatalf("Check: %+v %v", rep, err)
	}
	im, done := openFile(t, path)
	defer done()
	sameAsRaw(t, im, raw)
	lsize, lsum := libyal.Read(t, "vmdk", path)
	if lsize != size || lsum != fileSum(t, raw) {
		t.Fatalf("libvmdk reads %d bytes %s, want %d bytes %s", lsize, lsum, size, fileSum(t, raw))
	}
}

// TestWriteOddSizes: each subformat at odd sizes, written through WriteAt
// and (streamOptimized) through the Compressor.
func TestWriteOddSizes(t *testing.T) {
	oracle.QemuImg(t)
	sizes := []int64{1, 511, 512, 65536 + 512, 3<<20 + 4096 + 17, 33<<20 + 123}
	cases := []struct {
		name       string
		opt        disk.CreateOptions
		compressor bool
		createType string
	}{
		{"monolithicSparse", disk.CreateOptions{}, false, "monolithicSparse"},
		{"streamOptimized", disk.CreateOptions{Options: map[string]string{"subformat": "streamOptimized"}}, false, "streamOptimized"},
		{"compressor", disk.CreateOptions{Compress: true}, true, "streamOptimized"},
	}
	for _, c := range cases {
		for _, n := range sizes {
			t.Run(c.name+"/"+itoa(n), func(t *testing.T) {
				dir := t.TempDir()
				data := pattern(n, uint64(n)+7)
				padded := append(bytes.Clone(data), make([]byte, (512-n%512)%512)...)
				raw := writeRaw(t, dir, "in.raw", padded)
				out := filepath.Join(dir, "out.vmdk")
				makeVMDK(t, out, data, n, c.opt, c.compressor)
				assertGood(t, out, raw, int64(len(padded)), c.createType)
				// The same input gives the same bytes.
				again := filepath.Join(t.TempDir(), "out.vmdk")
				makeVMDK(t, again, data, n, c.opt, c.compressor)
				a, _ := os.ReadFile(out)
				b, _ := os.ReadFile(again)
				if !bytes.Equal(a, b) {
					t.Fatal("two writes of the same input differ")
				}
			})
		}
	}
}
