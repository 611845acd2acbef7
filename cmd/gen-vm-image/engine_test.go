package main

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
	"github.com/ucphhpc/gen-vm-image-go/internal/testcorpus"
)

// The digests REFERENCE.md gives for the Python tool's own test image.
const (
	testQcow2Sha512      = "db12db337b0d1c82ab5b174c21241e0be24ee44a79e0d310aa05e3652e301a22bf604fd86c4cf9e4489bd512cab275feb8d8326847ca04b90e0903c72f39cb64"
	testQcow2Sha512First = "1d7e67951f6b693b8f0ec66c7ad27743edb9088bee19b60cdd564abe0f3d1f36664299aa03ad4903e60fccdd60faf71b4eacb498c8c33da06bd5f6f33f7852ce"
)

func testQcow2(t *testing.T) string {
	t.Helper()
	return filepath.Join(testcorpus.Dir(t), "gen-vm-image", "test.qcow2")
}

// patternImage makes a qcow2 with qemu-img from a raw file of random data,
// zero runs and text, and returns both paths.
func patternImage(t *testing.T, dir string, size int, compress bool) (raw, qcow string) {
	t.Helper()
	r := rand.New(rand.NewPCG(7, 7))
	data := make([]byte, size)
	for off := 0; off < size; off += 256 << 10 {
		end := min(off+256<<10, size)
		switch (off / (256 << 10)) % 3 {
		case 0:
			for i := off; i < end; i++ {
				data[i] = byte(r.Uint32())
			}
		case 1: // zeros
		case 2:
			copy(data[off:end], strings.Repeat("gen-vm-image ", (end-off)/13+1))
		}
	}
	raw = filepath.Join(dir, "pattern.raw")
	if err := os.WriteFile(raw, data, 0o644); err != nil {
		t.Fatal(err)
	}
	qcow = filepath.Join(dir, "pattern.qcow2")
	args := []string{"convert", "-O", "qcow2"}
	if compress {
		args = append(args, "-c")
	}
	oracle.MustRun(t, append(args, raw, qcow)...)
	return raw, qcow
}

func TestSingleChecksums(t *testing.T) {
	in := testQcow2(t)
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"whole file", []string{"-ict", "sha512", "-ic", testQcow2Sha512}, 0, ""},
		{"upper-case hex", []string{"--input-checksum-type", "sha512", "--input-checksum", strings.ToUpper(testQcow2Sha512)}, 0, ""},
		{"first 1000 bytes", []string{"-ict", "sha512", "-ic", testQcow2Sha512First, "-icrb", "1000", "-icbs", "333"}, 0, ""},
		{"mismatch", []string{"-ict", "sha512", "-ic", testQcow2Sha512First}, 6, testQcow2Sha512First},
		{"wrong algorithm", []string{"-ict", "sha256", "-ic", testQcow2Sha512}, 6, "this one has 128: one of sha512, sha3_512, blake2b?"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"single", "img", "20M", "-i", in}, tc.args...)
			r := gvi(t, dir, args...)
			resp := r.result(t)
			if r.code != tc.code || !strings.Contains(resp.Response, tc.msg) {
				t.Fatalf("exit %d %+v; want %d with %q", r.code, resp, tc.code, tc.msg)
			}
			out := filepath.Join(dir, "generated-images", "img.qcow2")
			if tc.code != 0 {
				if entries, _ := os.ReadDir(filepath.Join(dir, "generated-images")); len(entries) != 0 {
					t.Fatalf("a failed checksum left %v", entries)
				}
				return
			}
			oracle.AssertQcow2(t, out, 20<<20)
			oracle.AssertSame(t, in, "qcow2", out, "qcow2")
		})
	}
}

func TestSingleConvertAndResize(t *testing.T) {
	work := t.TempDir()
	raw, qcow := patternImage(t, work, 6<<20+4096, false)
	_, zqcow := patternImage(t, t.TempDir(), 6<<20+4096, true)
	tests := []struct {
		name, in, of string
		size         string
		want         int64
	}{
		{"qcow2 to qcow2, grown", qcow, "qcow2", "1G", 1 << 30},
		{"compressed qcow2 to raw, grown", zqcow, "raw", "64M", 64 << 20},
		{"raw to qcow2, same size", raw, "qcow2", "6148K", 6<<20 + 4096},
		{"qcow2 to qcow2, 16T", qcow, "qcow2", "16T", 16 << 40},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			r := gvi(t, dir, "single", "out", tc.size, "-i", tc.in, "-of", tc.of, "-v")
			if resp := r.result(t); r.code != 0 {
				t.Fatalf("exit %d %+v", r.code, resp)
			}
			out := filepath.Join(dir, "generated-images", "out."+tc.of)
			checkImage(t, out, tc.want)
			oracle.AssertSame(t, raw, "raw", out, tc.of)
		})
	}
}

func TestSingleShrink(t *testing.T) {
	work := t.TempDir()
	raw, qcow := patternImage(t, work, 8<<20, false)
	dir := t.TempDir()
	r := gvi(t, dir, "single", "small", "4M", "-i", qcow)
	resp := r.result(t)
	if r.code != 7 || !strings.Contains(resp.Response, "4194304") || !strings.Contains(resp.Response, "8388608") || !strings.Contains(resp.Response, "--allow-shrink") {
		t.Fatalf("exit %d %+v; want 7 naming both sizes and the opt-in", r.code, resp)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "generated-images")); len(entries) != 0 {
		t.Fatalf("a refused shrink left %v", entries)
	}
	r = gvi(t, dir, "single", "small", "4M", "-i", qcow, "--allow-shrink", "-of", "raw")
	if resp := r.result(t); r.code != 0 {
		t.Fatalf("exit %d %+v", r.code, resp)
	}
	out := filepath.Join(dir, "generated-images", "small.raw")
	got, _ := os.ReadFile(out)
	want, _ := os.ReadFile(raw)
	if len(got) != 4<<20 || string(got) != string(want[:4<<20]) {
		t.Fatalf("shrunk image: %d bytes, content equal: %v", len(got), string(got) == string(want[:len(got)]))
	}
}

func TestSingleFormatDetection(t *testing.T) {
	in := testQcow2(t)
	dir := t.TempDir()
	r := gvi(t, dir, "single", "x", "20M", "-i", in, "-if", "raw")
	resp := r.result(t)
	if r.code != 5 || !strings.Contains(resp.Response, "raw") || !strings.Contains(resp.Response, "qcow2") {
		t.Fatalf("exit %d %+v; want 5 naming raw and qcow2", r.code, resp)
	}
	// The file name does not matter: content decides.
	renamed := filepath.Join(dir, "disguised.raw")
	data, _ := os.ReadFile(in)
	os.WriteFile(renamed, data, 0o644)
	r = gvi(t, dir, "single", "y", "20M", "-i", renamed, "-of", "raw")
	if resp := r.result(t); r.code != 0 {
		t.Fatalf("exit %d %+v", r.code, resp)
	}
	oracle.AssertSame(t, in, "qcow2", filepath.Join(dir, "generated-images", "y.raw"), "raw")
}

// TestCheckAndInfoAgreeWithQemu compares `check --output json` and `info
// --output json` with qemu-img's on images of several kinds.
func TestCheckAndInfoAgreeWithQemu(t *testing.T) {
	corpus := testcorpus.Dir(t)
	work := t.TempDir()
	_, zqcow := patternImage(t, work, 3<<20, true)
	images := []string{
		zqcow,
		filepath.Join(corpus, "gen-vm-image", "test.qcow2"),
		filepath.Join(corpus, "dfvfs", "vsstest.qcow2"),
		filepath.Join(corpus, "dfvfs", "image.qcow2"),
		filepath.Join(corpus, "qemu", "bios-tables-test.x86_64.iso.qcow2"),
	}
	for _, img := range images {
		t.Run(filepath.Base(img), func(t *testing.T) {
			r := gvi(t, work, "check", "--output", "json", img)
			if r.code != 0 {
				t.Fatalf("check exit %d: %s%s", r.code, r.stdout, r.stderr)
			}
			var ours oracle.CheckReport
			if err := json.Unmarshal([]byte(r.stdout), &ours); err != nil {
				t.Fatal(err)
			}
			theirs, _ := oracle.Check(t, img, "qcow2")
			if ours != theirs {
				t.Errorf("check: ours %+v\nqemu-img %+v", ours, theirs)
			}
			r = gvi(t, work, "info", "--output", "json", img)
			var info oracle.Info
			if err := json.Unmarshal([]byte(r.stdout), &info); err != nil {
				t.Fatal(err)
			}
			q := oracle.ImageInfo(t, img)
			if info != q {
				t.Errorf("info: ours %+v\nqemu-img %+v", info, q)
			}
		})
	}
}

// TestInfoFormatSpecificAsQemu: the format-specific part of `info` is
// qemu-img's to the byte, in text and in JSON, whatever the qcow2 has:
// version 2 (no feature bits), an external data file, encryption, lazy
// refcounts, extended L2 entries, zstd. Only the details of a LUKS header
// are not shown, so LUKS is not among them.
func TestInfoFormatSpecificAsQemu(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	secret := []string{"--object", "secret,id=s0,data=x"}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"v3", nil},
		{"v2", []string{"-o", "compat=0.10"}},
		{"data file", []string{"-o", "data_file=data.raw"}},
		{"raw data file, lazy, extended L2, zstd", []string{"-o", "data_file=x.raw,data_file_raw=on,lazy_refcounts=on,extended_l2=on,compression_type=zstd"}},
		{"aes", append(secret, "-o", "encrypt.format=aes,encrypt.key-secret=s0")},
		{"aes with a data file", append(secret, "-o", "encrypt.format=aes,encrypt.key-secret=s0,data_file=d.raw")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".qcow2")
			oracle.MustRun(t, append(append(append([]string{"create", "-q", "-f", "qcow2"}, tc.args...), img), "1M")...)
			specific := func(text string) string {
				_, after, _ := strings.Cut(text, "Format specific information:\n")
				var lines []string
				for _, l := range strings.SplitAfter(after, "\n") {
					if !strings.HasPrefix(l, " ") {
						break
					}
					lines = append(lines, l)
				}
				return strings.Join(lines, "")
			}
			ours := gvi(t, dir, "info", img)
			theirs := oracle.MustRun(t, "info", img)
			if a, b := specific(ours.stdout), specific(theirs); a != b || a == "" {
				t.Errorf("text: ours\n%s\nqemu-img\n%s", a, b)
			}
			fields := func(text string) map[string]json.RawMessage {
				var m map[string]json.RawMessage
				if err := json.Unmarshal([]byte(text), &m); err != nil {
					t.Fatalf("%v\n%s", err, text)
				}
				return m
			}
			o := fields(gvi(t, dir, "info", "--output", "json", img).stdout)
			q := fields(oracle.MustRun(t, "info", "--output=json", img))
			for _, key := range []string{"format-specific", "encrypted"} {
				if string(o[key]) != string(q[key]) {
					t.Errorf("JSON %s: ours\n%s\nqemu-img\n%s", key, o[key], q[key])
				}
			}
		})
	}
}

// --no-sync changes when the data reaches the disk, nothing else: every
// command that writes images takes it, and the images are the same.
func TestNoSync(t *testing.T) {
	work := t.TempDir()
	raw, zqcow := patternImage(t, work, 6<<20+4096, true)
	arch := filepath.Join(work, "arch.yml")
	yml := "owner: o\nimages:\n  a:\n    name: a\n    size: 64M\n    input:\n      path: " + zqcow + "\n"
	if err := os.WriteFile(arch, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		out  string
	}{
		{"single", []string{"single", "out", "64M", "-i", zqcow, "--no-sync"}, "generated-images/out.qcow2"},
		{"multiple", []string{"multiple", arch, "--no-sync"}, "generated-images/a.qcow2"},
		{"convert", []string{"convert", "--no-sync", "-O", "raw", zqcow, "out.raw"}, "out.raw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			r := gvi(t, dir, tc.args...)
			if resp := r.result(t); r.code != 0 {
				t.Fatalf("exit %d %+v", r.code, resp)
			}
			out := filepath.Join(dir, tc.out)
			format := strings.TrimPrefix(filepath.Ext(out), ".")
			if format == "qcow2" {
				checkImage(t, out, 64<<20)
			}
			oracle.AssertSame(t, raw, "raw", out, format)
		})
	}
}
