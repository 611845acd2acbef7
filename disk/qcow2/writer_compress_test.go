package qcow2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/convert"
	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/disk/raw"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// cmpText returns n bytes of real text (Go's own sources), the kind of
// data a file system image holds, cycling when they run out.
func cmpText(t testing.TB, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	root := filepath.Join(runtime.GOROOT(), "src", "net")
	for buf.Len() < n {
		before := buf.Len()
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || buf.Len() >= n || d.IsDir() || !strings.HasSuffix(path, ".go") {
				return nil
			}
			b, err := os.ReadFile(path)
			if err == nil {
				buf.Write(b)
			}
			return nil
		})
		if buf.Len() == before {
			t.Skip("no Go sources to take text from")
		}
	}
	return buf.Bytes()[:n]
}

// cmpRaw writes a raw disk of size bytes: text, random (incompressible)
// runs, zeros, a block repeated 8 KiB and 40 KiB later (matches a 32 KiB
// window would take), and a last cluster that is not whole.
func cmpRaw(t testing.TB, dir string, size int64, seed uint64) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	data := make([]byte, size)
	text := cmpText(t, int(size))
	for off := int64(0); off < size; {
		n := min(size-off, int64(4096*(1+rng.IntN(40))))
		switch rng.IntN(4) {
		case 0: // zeros
		case 1:
			for i := range data[off : off+n] {
				data[off+int64(i)] = byte(rng.Uint32())
			}
		case 2:
			copy(data[off:off+n], text[off:])
		case 3:
			blk := make([]byte, 3000)
			for i := range blk {
				blk[i] = byte(rng.Uint32())
			}
			for p := off; p < off+n; p += 8192 + 40<<10 {
				copy(data[p:min(off+n, p+3000)], blk)
				if q := p + 8192; q < off+n {
					copy(data[q:min(off+n, q+3000)], blk)
				}
			}
		}
		off += n
	}
	data[size-1] = 1
	path := filepath.Join(dir, fmt.Sprintf("in-%d.raw", seed))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// cmpConvert converts a raw file into a compressed qcow2 with our
// pipeline, as convert -c does, with the given workers (0: every core).
func cmpConvert(t testing.TB, rawPath, out string, opt disk.CreateOptions, workers int) disk.Writer {
	t.Helper()
	in, err := os.Open(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	st, _ := in.Stat()
	src, err := raw.Open(in, st.Size(), disk.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	opt.Compress = true
	w, err := Create(f, st.Size(), opt)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := w.(disk.Compressor); !ok {
		t.Fatal("Create with Compress did not return a Compressor")
	}
	if _, err := convert.Copy(context.Background(), w, src, convert.Options{Workers: workers, ZeroBlock: BlockSize(opt)}); err != nil {
		t.Fatal(err)
	}
	return w
}

func cmpOpt(cs int64, ctype string) disk.CreateOptions {
	opt := clusterOpt(cs)
	if opt.Options == nil {
		opt.Options = map[string]string{}
	}
	if ctype != "" {
		opt.Options["compression_type"] = ctype
	}
	return opt
}

func TestCompressedConvert(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	for _, size := range []int64{1, 511, 512, 1<<20 + 4096 + 512, 5<<20 + 3584} {
		rawPath := cmpRaw(t, dir, size, uint64(size))
		for _, cs := range []int64{512, 4 << 10, 64 << 10, 2 << 20} {
			if size > 2<<20 && cs < 64<<10 {
				continue // thousands of tiny clusters: slow to check, nothing new
			}
			for _, ctype := range []string{"zlib", "zstd"} {
				t.Run(fmt.Sprintf("size%d/cluster%d/%s", size, cs, ctype), func(t *testing.T) {
					out := filepath.Join(t.TempDir(), "out.qcow2")
					w := cmpConvert(t, rawPath, out, cmpOpt(cs, ctype), 0)
					if err := w.Close(); err != nil {
						t.Fatal(err)
					}
					info := oracle.AssertQcow2(t, out, (size+511)&^511)
					if info.Specific.Data.CompressionType != ctype {
						t.Errorf("compression type %q, want %s", info.Specific.Data.CompressionType, ctype)
					}
					oracle.AssertSame(t, out, "qcow2", rawPath, "raw")
					r := chkAssertAgree(t, out)
					if r.CompressedClusters == 0 {
						t.Errorf("no compressed clusters: %+v", r)
					}
				})
			}
		}
	}
}

// A sparse 2 TiB disk with data at its start, in its middle and at its
// end: only the clusters that hold data are read and stored.
func TestCompressedSparse2T(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	rawPath := filepath.Join(dir, "sparse.raw")
	f, err := os.Create(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	const size = 2 << 40
	text := cmpText(t, 3*100<<10)
	for i, off := range []int64{0, 1<<40 + 12345, size - 100<<10} {
		if _, err := f.WriteAt(text[i*100<<10:(i+1)*100<<10], off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, ctype := range []string{"zlib", "zstd"} {
		out := filepath.Join(dir, ctype+".qcow2")
		w := cmpConvert(t, rawPath, out, cmpOpt(0, ctype), 0)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		oracle.AssertQcow2(t, out, size)
		oracle.AssertSame(t, out, "qcow2", rawPath, "raw")
		r := chkAssertAgree(t, out)
		if r.AllocatedClusters != 2+2+2 || r.CompressedClusters != 6 {
			t.Errorf("%s: %d clusters allocated, %d compressed; want 6 and 6", ctype, r.AllocatedClusters, r.CompressedClusters)
		}
	}
}

// The same input gives the same bytes whatever the number of workers.
func TestCompressedDeterministic(t *testing.T) {
	dir := t.TempDir()
	rawPath := cmpRaw(t, dir, 6<<20+512, 3)
	for _, ctype := range []string{"zlib", "zstd"} {
		var first []byte
		for _, workers := range []int{1, 7, 0} {
			out := filepath.Join(dir, fmt.Sprintf("%s-%d.qcow2", ctype, workers))
			w := cmpConvert(t, rawPath, out, cmpOpt(0, ctype), workers)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = b
			} else if !bytes.Equal(first, b) {
				t.Errorf("%s: %d workers wrote other bytes than 1", ctype, workers)
			}
		}
	}
}

// Grow and shrink after a compressed conversion, to sizes that cut a
// compressed cluster: qemu-img reads what a raw twin holds.
func TestCompressedResize(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	size := int64(3<<20 + 4096)
	rawPath := cmpRaw(t, dir, size, 11)
	for _, ctype := range []string{"zlib", "zstd"} {
		for _, tt := range []struct {
			name  string
			sizes []int64
		}{
			{"grow", []int64{size + 64<<20 + 512}},
			{"shrink-cut", []int64{1<<20 + 3*512}},
			{"shrink-grow", []int64{2<<20 + 1024, 4 << 20}},
			{"shrink-aligned", []int64{1 << 20}},
		} {
			t.Run(ctype+"/"+tt.name, func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "out.qcow2")
				w := cmpConvert(t, rawPath, out, cmpOpt(64<<10, ctype), 0)
				want, err := os.ReadFile(rawPath)
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range tt.sizes {
					if err := w.Resize(s, true); err != nil {
						t.Fatal(err)
					}
					if s < int64(len(want)) {
						want = want[:s]
					} else {
						want = append(want, make([]byte, s-int64(len(want)))...)
					}
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				twin := filepath.Join(t.TempDir(), "want.raw")
				if err := os.WriteFile(twin, want, 0o644); err != nil {
					t.Fatal(err)
				}
				oracle.AssertQcow2(t, out, int64(len(want)))
				oracle.AssertSame(t, out, "qcow2", twin, "raw")
				chkAssertAgree(t, out)
			})
		}
	}
}

func TestCompressedOptions(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "x.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := Create(f, 1<<20, cmpOpt(0, "lz4")); !errors.Is(err, disk.ErrOption) {
		t.Errorf("compression_type=lz4: %v, want ErrOption", err)
	}
	format, _ := disk.Lookup("qcow2")
	err = format.CheckOptions(disk.CreateOptions{Compress: true, Options: map[string]string{"compression_type": "xz"}})
	if !errors.Is(err, disk.ErrOption) || !strings.Contains(err.Error(), "zlib, zstd") {
		t.Errorf("compression_type=xz: %v, want ErrOption naming zlib, zstd", err)
	}
	w, err := Create(f, 1<<20, disk.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := w.(disk.Compressor); ok {
		t.Error("a writer made without Compress is a Compressor: convert would compress")
	}
	w, err = Create(f, 1<<20, disk.CreateOptions{Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	cw := w.(disk.Compressor)
	stored, err := cw.Compress(0, bytes.Repeat([]byte("abc"), 1000))
	if err != nil {
		t.Fatal(err)
	}
	if err := cw.WriteStored(0, stored); err != nil {
		t.Fatal(err)
	}
	if err := cw.WriteStored(0, stored); err == nil {
		t.Error("a cluster stored twice was accepted")
	}
	if err := cw.WriteStored(100, stored); err == nil {
		t.Error("a stored cluster at an unaligned offset was accepted")
	}
	if _, err := w.WriteAt([]byte{1}, 10); err == nil {
		t.Error("a write into a compressed cluster was accepted")
	}
}

// cmpSeed is a small image of our compressed writer for the fuzz targets:
// 512-byte clusters of text, zeros and random bytes, so that streams share
// host clusters (refcounts above 1) and some clusters are stored plain.
func cmpSeed(f *testing.F, ctype string) []byte {
	f.Helper()
	path := filepath.Join(f.TempDir(), "seed-"+ctype+".qcow2")
	file, err := os.Create(path)
	if err != nil {
		f.Fatal(err)
	}
	defer file.Close()
	const size = 12<<10 + 512
	opt := cmpOpt(512, ctype)
	opt.Compress = true
	w, err := Create(file, size, opt)
	if err != nil {
		f.Fatal(err)
	}
	text := cmpText(f, size)
	rng := rand.New(rand.NewPCG(9, 9))
	c := w.(disk.Compressor)
	for off := int64(0); off < size; off += 512 {
		unit := text[off : off+512]
		switch off / 512 % 4 {
		case 1:
			continue // zeros: not stored
		case 3:
			unit = wrRandom(rng, 512)
		}
		stored, err := c.Compress(off, unit)
		if err == nil {
			err = c.WriteStored(off, stored)
		}
		if err != nil {
			f.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	return b
}
