package main

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// TestLocalCompressedInputs: a local .xz, .gz or .zst input is
// decompressed as a downloaded one is (into the cache, never beside the
// input), verified against the checksum of the file as given, and its
// decompressed copy is reused while the file is unchanged.
func TestLocalCompressedInputs(t *testing.T) {
	dir := t.TempDir()
	_, qcow := patternImage(t, dir, 4<<20, false)
	data, err := os.ReadFile(qcow)
	if err != nil {
		t.Fatal(err)
	}
	compressors := map[string]func([]byte) []byte{
		"gz": func(b []byte) []byte { return gzipped(t, b) },
		"xz": func(b []byte) []byte {
			var out bytes.Buffer
			w, _ := xz.NewWriter(&out)
			w.Write(b)
			w.Close()
			return out.Bytes()
		},
		"zst": func(b []byte) []byte {
			w, _ := zstd.NewWriter(nil)
			return w.EncodeAll(b, nil)
		},
	}
	for ext, compress := range compressors {
		t.Run(ext, func(t *testing.T) {
			in := filepath.Join(dir, "img.qcow2."+ext)
			packed := compress(data)
			if err := os.WriteFile(in, packed, 0o644); err != nil {
				t.Fatal(err)
			}
			cache := filepath.Join(dir, "cache-"+ext)
			out := filepath.Join(dir, "out-"+ext)
			args := []string{"single", "img", "8M", "-i", in, "-ict", "sha256", "-ic", sha256hex(packed), "-od", out, "--cache-dir", cache, "-v"}
			before := names(t, dir)
			r := gvi(t, dir, args...)
			resp := r.result(t)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, resp.Response)
			}
			oracle.AssertSame(t, qcow, "qcow2", filepath.Join(out, "img.qcow2"), "qcow2")
			if !strings.Contains(strings.Join(resp.VerboseMessages, "\n"), "compressed; its decompressed copy is "+cache) {
				t.Errorf("messages: %q", resp.VerboseMessages)
			}
			for name := range names(t, dir) {
				if !before[name] && name != "cache-"+ext && name != "out-"+ext {
					t.Errorf("something was written beside the input: %s", name)
				}
			}
			// Again: the copy is reused.
			r = gvi(t, dir, append(args, "--overwrite")...)
			if resp := r.result(t); r.code != 0 || !strings.Contains(strings.Join(resp.VerboseMessages, "\n"), "Cache hit: the decompressed copy") {
				t.Errorf("second run: exit %d, %q", r.code, resp.VerboseMessages)
			}
			// A wrong checksum of the compressed file is refused.
			bad := append([]string(nil), args...)
			bad[8] = strings.Repeat("0", 64)
			if r := gvi(t, dir, append(bad, "--overwrite")...); r.code != 6 {
				t.Errorf("a wrong checksum: exit %d", r.code)
			}
		})
	}
}

func names(t *testing.T, dir string) map[string]bool {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]bool{}
	for _, e := range entries {
		m[e.Name()] = true
	}
	return m
}

// gzipped is data gzip-compressed.
func gzipped(t *testing.T, data []byte) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestInputMistakes: the mistakes a script makes with -i and its options
// are refused with what is wrong, before anything is read.
func TestInputMistakes(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.raw")
	writeFile(t, in, strings.Repeat("x", 4096))
	trunc := filepath.Join(dir, "trunc.qcow2")
	_, qcow := patternImage(t, dir, 4<<20, false)
	data, _ := os.ReadFile(qcow)
	os.WriteFile(trunc, data[:len(data)/2], 0o644)
	tests := []struct {
		name string
		args []string
		code int
		msg  string // in the JSON response, or on stderr for usage errors
	}{
		{"empty input", []string{"-i", ""}, 4, "-i/--input is empty"},
		{"ftp", []string{"-i", "ftp://example.org/x.img"}, 5, "the ftp scheme is not supported"},
		{"oci with one slash", []string{"-i", "oci:/registry.example.org/vm/disk:1"}, 1, "(did you mean oci://registry.example.org/vm/disk:1?)"},
		{"checksum without input", []string{"-ic", strings.Repeat("a", 64)}, 2, "argument -ic/--input-checksum: there is no input (-i) to apply it to"},
		{"buffer size without checksum", []string{"-i", in, "-icbs", "4096"}, 2, "it tunes a checksum, and none is given"},
		{"read bytes not a number", []string{"-i", in, "-ict", "sha256", "-ic", strings.Repeat("a", 64), "-icrb", "1k"}, 2, `invalid value "1k": must be a positive whole number`},
		{"a sha512 digest for sha256", []string{"-i", in, "-ict", "sha256", "-ic", strings.Repeat("a", 128)}, 6, "this one has 128: one of sha512, sha3_512, blake2b?"},
		{"truncated qcow2", []string{"-i", trunc}, 2, "Failed to load path: " + trunc},
		{"empty file", []string{"-i", filepath.Join(dir, "empty")}, 2, "empty"},
	}
	writeFile(t, filepath.Join(dir, "empty"), "")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := gvi(t, dir, append([]string{"single", "img", "4M", "-od", filepath.Join(dir, "out")}, tt.args...)...)
			if r.code != tt.code || !strings.Contains(r.stdout+r.stderr, tt.msg) {
				t.Fatalf("exit %d, %s%s; want %d saying %q", r.code, r.stdout, r.stderr, tt.code, tt.msg)
			}
			if entries, _ := os.ReadDir(filepath.Join(dir, "out")); len(entries) != 0 {
				t.Errorf("left %v", entries)
			}
		})
	}
}

// TestNotADiskInput: an HTML page, a text file or a tar given as an input
// is refused (code 2) saying what it looks like; -if raw takes it anyway.
func TestNotADiskInput(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"index.html": "<!DOCTYPE html>\n<html><body>Index of /</body></html>\n",
		"notes.txt":  strings.Repeat("this is not a disk\n", 40),
	}
	for name, content := range files {
		path := filepath.Join(dir, name)
		writeFile(t, path, content)
		r := gvi(t, dir, "single", "x", "1M", "-i", path, "-od", filepath.Join(dir, "out"))
		if resp := r.result(t); r.code != 2 || !strings.Contains(resp.Response, "not a disk image") || !strings.Contains(resp.Response, "-if raw") {
			t.Errorf("%s: exit %d %q", name, r.code, resp.Response)
		}
		r = gvi(t, dir, "single", "x-"+name, "1M", "-i", path, "-if", "raw", "-od", filepath.Join(dir, "out"))
		if resp := r.result(t); r.code != 0 {
			t.Errorf("%s with -if raw: exit %d %q", name, r.code, resp.Response)
		}
	}
	// A raw disk that is not a whole number of sectors is taken, with a notice.
	odd := filepath.Join(dir, "odd.raw")
	os.WriteFile(odd, append(make([]byte, 1000), 1), 0o644)
	r := gvi(t, dir, "single", "odd", "1M", "-i", odd, "-od", filepath.Join(dir, "out"))
	if r.code != 0 || !strings.Contains(r.stderr, "not a whole number of 512-byte sectors") {
		t.Errorf("odd size: exit %d %q", r.code, r.stderr)
	}
}

// TestFormatOptions: -o options reach the format, and a wrong one is code
// 5 naming the valid ones, on the command line and in an architecture
// file (with its line).
func TestFormatOptions(t *testing.T) {
	dir := t.TempDir()
	r := gvi(t, dir, "single", "small", "64M", "-o", "cluster_size=4K")
	if r.code != 0 {
		t.Fatalf("exit %d %s", r.code, r.stderr)
	}
	if info := oracle.ImageInfo(t, filepath.Join(dir, "generated-images", "small.qcow2")); info.ClusterSize != 4096 {
		t.Errorf("cluster size %d", info.ClusterSize)
	}
	for _, tt := range []struct{ opts, want string }{
		{"cluster_sise=4K", `no option "cluster_sise"; they take cluster_size, compat`},
		{"compat=0.10", "compat takes 1.1, v3"},
		{"cluster_size=3000", "must be a power of two"},
		{"junk", "is not KEY=VALUE"},
	} {
		r := gvi(t, dir, "single", "bad", "64M", "-o", tt.opts)
		if resp := r.result(t); r.code != 5 || !strings.Contains(resp.Response, tt.want) {
			t.Errorf("-o %s: exit %d %q; want 5 saying %q", tt.opts, r.code, resp.Response, tt.want)
		}
	}
	arch := filepath.Join(dir, "a.yml")
	writeFile(t, arch, "owner: me\nimages:\n  a:\n    name: a\n    size: 1M\n    format_options:\n      cluster_size: 2M\n  b:\n    name: b\n    size: 1M\n    format: raw\n    format_options: {cluster_size: 2M}\n")
	r = gvi(t, dir, "multiple", arch, "-od", filepath.Join(dir, "m"))
	if resp := r.result(t); r.code != 5 || !strings.Contains(resp.Response, "a.yml:12") || !strings.Contains(resp.Response, "raw images take no options") {
		t.Errorf("multiple: exit %d %q", r.code, resp.Response)
	}
}
