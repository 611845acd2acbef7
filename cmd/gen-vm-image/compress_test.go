package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// assertCompressed checks a compressed qcow2 we wrote: qemu-img check
// finds no errors and compressed clusters, info names the compression
// type, and compare finds want (a raw file) in it.
func assertCompressed(t *testing.T, path string, size int64, ctype, want string) {
	t.Helper()
	info := oracle.AssertQcow2(t, path, size)
	if info.Specific.Data.CompressionType != ctype {
		t.Errorf("%s: compression type %q, want %s", path, info.Specific.Data.CompressionType, ctype)
	}
	if r, _ := oracle.Check(t, path, "qcow2"); r.CompressedClusters == 0 {
		t.Errorf("%s: no compressed clusters: %+v", path, r)
	}
	oracle.AssertSame(t, path, "qcow2", want, "raw")
}

// -c reaches the qcow2 writer from convert, single and multiple, and what
// it writes is compressed, checked, and what qemu-img reads back.
func TestCompressedOutputs(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	raw, _ := patternImage(t, dir, 3<<20+512, false)

	for _, ctype := range []string{"zlib", "zstd"} {
		out := filepath.Join(dir, "conv-"+ctype+".qcow2")
		r := gvi(t, dir, "convert", "-c", "-o", "compression_type="+ctype, raw, out)
		if resp := r.result(t); r.code != 0 {
			t.Fatalf("convert -c %s: exit %d %+v", ctype, r.code, resp)
		}
		assertCompressed(t, out, 3<<20+512, ctype, raw)
		// One core or several: the same bytes.
		one := filepath.Join(dir, "one-"+ctype+".qcow2")
		r = gviEnv(t, dir, []string{"GOMAXPROCS=1"}, "convert", "-c", "-o", "compression_type="+ctype, raw, one)
		if resp := r.result(t); r.code != 0 {
			t.Fatalf("convert -c %s on one core: exit %d %+v", ctype, r.code, resp)
		}
		a, errA := os.ReadFile(out)
		b, errB := os.ReadFile(one)
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("convert -c %s wrote other bytes on one core than on %d (%v, %v)", ctype, runtime.NumCPU(), errA, errB)
		}
	}

	// single: converted compressed, then grown to SIZE.
	r := gvi(t, dir, "single", "grown", "8M", "-i", raw, "-c", "-od", "out", "-v")
	if resp := r.result(t); r.code != 0 || !strings.Contains(strings.Join(resp.VerboseMessages, "\n"), "Compressed the ") {
		t.Fatalf("single -c -v: exit %d %+v; want a message saying how much the data compressed to", r.code, resp)
	}
	want := filepath.Join(dir, "grown.raw")
	data, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(want, append(data, make([]byte, 8<<20-len(data))...), 0o644); err != nil {
		t.Fatal(err)
	}
	assertCompressed(t, filepath.Join(dir, "out", "grown.qcow2"), 8<<20, "zlib", want)

	// multiple: compress: true with the compression type as a format option.
	arch := filepath.Join(dir, "arch.yml")
	writeFile(t, arch, "owner: me\nimages:\n  a:\n    name: z\n    size: 8M\n    compress: true\n    format_options:\n      compression_type: zstd\n    input:\n      path: "+raw+"\n")
	r = gvi(t, dir, "multiple", arch, "-od", "multi")
	if resp := r.result(t); r.code != 0 {
		t.Fatalf("multiple with compress: true: exit %d %+v", r.code, resp)
	}
	assertCompressed(t, filepath.Join(dir, "multi", "z.qcow2"), 8<<20, "zstd", want)
}

// -c where the format cannot compress, or a compression type qcow2 does
// not have, is an invalid attribute (5), said before anything is written.
func TestCompressRefused(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "in.raw")
	writeFile(t, raw, strings.Repeat("x", 4096))
	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{"convert to raw", []string{"convert", "-c", "-O", "raw", raw, filepath.Join(dir, "o.raw")}, "raw images cannot be compressed"},
		{"single raw", []string{"single", "r", "1M", "-c", "-of", "raw", "-od", "o"}, "raw images cannot be compressed"},
		{"unknown type", []string{"convert", "-c", "-o", "compression_type=lz4", raw, filepath.Join(dir, "o.qcow2")}, "zlib, zstd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := gvi(t, dir, tc.args...)
			resp := r.result(t)
			if r.code != 5 || !strings.Contains(resp.Response, tc.msg) {
				t.Fatalf("exit %d %+v; want 5 saying %q", r.code, resp, tc.msg)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "o.raw")); err == nil {
		t.Error("a refused conversion left an output")
	}
	writeFile(t, filepath.Join(dir, "arch.yml"), "owner: me\nimages:\n  a:\n    name: r\n    size: 1M\n    format: raw\n    compress: true\n")
	r := gvi(t, dir, "multiple", filepath.Join(dir, "arch.yml"), "-od", "m")
	if resp := r.result(t); r.code != 5 || !strings.Contains(resp.Response, "cannot be compressed") {
		t.Fatalf("multiple with compress: true for raw: exit %d %+v", r.code, resp)
	}
}
