package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	genvm "github.com/ucphhpc/gen-vm-image-go"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
	"github.com/ucphhpc/gen-vm-image-go/internal/testcorpus"
)

// binary is the gen-vm-image built once for the end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gen-vm-image-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "gen-vm-image")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		panic("building gen-vm-image: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type runResult struct {
	stdout, stderr string
	code           int
}

// gvi runs the binary in dir with args.
func gvi(t *testing.T, dir string, args ...string) runResult {
	t.Helper()
	return gviEnv(t, dir, nil, args...)
}

type response struct {
	Response        string   `json:"response"`
	ReturnCode      int      `json:"return_code"`
	Status          string   `json:"status"`
	VerboseMessages []string `json:"verbose_messages"`
}

// result decodes the JSON result from stdout (success) or stderr (failure)
// and checks it is where it belongs.
func (r runResult) result(t *testing.T) response {
	t.Helper()
	src := r.stdout
	if r.code != 0 {
		src = r.stderr
		if strings.TrimSpace(r.stdout) != "" {
			t.Errorf("failure printed on stdout: %q", r.stdout)
		}
	}
	var resp response
	if err := json.Unmarshal([]byte(src), &resp); err != nil {
		t.Fatalf("result is not JSON (exit %d): %v\nstdout: %s\nstderr: %s", r.code, err, r.stdout, r.stderr)
	}
	if resp.ReturnCode != r.code {
		t.Errorf("return_code %d but exit code %d", resp.ReturnCode, r.code)
	}
	return resp
}

func TestHelpAndVersion(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"-h"}, {"--help"}, {}} {
		r := gvi(t, dir, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "usage: gen-vm-image") || !strings.Contains(r.stdout, "single") {
			t.Errorf("%v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	for _, args := range [][]string{{"--version"}, {"-V"}} {
		r := gvi(t, dir, args...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "gen-vm-image "+genvm.Version) || !strings.Contains(r.stdout, "built with go1.") {
			t.Errorf("%v: exit %d %q; want the version, then what built it", args, r.code, r.stdout)
		}
	}
	r := gvi(t, dir, "single", "-h")
	for _, want := range []string{"-i SINGLE_INPUT, --input SINGLE_INPUT", "-if SINGLE_INPUT_FORMAT", "-ict", "-ic SINGLE_INPUT_CHECKSUM,",
		"-icbs", "-icrb", "-od SINGLE_OUTPUT_DIRECTORY", "-of SINGLE_OUTPUT_FORMAT", "-V SINGLE_VERSION, --version SINGLE_VERSION", "--verbose, -v", "name", "size"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("single -h lacks %q:\n%s", want, r.stdout)
		}
	}
	r = gvi(t, dir, "multiple", "--help")
	for _, want := range []string{"-iod MULTIPLE_OUTPUT_DIRECTORY", "--overwrite", "--fail-fast", "architecture_path"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("multiple -h lacks %q:\n%s", want, r.stdout)
		}
	}
	if r := gvi(t, dir, "bogus"); r.code != 2 || !strings.Contains(r.stderr, "invalid choice") {
		t.Errorf("unknown command: exit %d %s", r.code, r.stderr)
	}
	if r := gvi(t, dir, "single", "only-name"); r.code != 2 || !strings.Contains(r.stderr, "required: size") {
		t.Errorf("missing size: exit %d %s", r.code, r.stderr)
	}
	if r := gvi(t, dir, "single", "a", "1G", "--bogus"); r.code != 2 || !strings.Contains(r.stderr, "unrecognized arguments: --bogus") {
		t.Errorf("unknown option: exit %d %s", r.code, r.stderr)
	}
}

// TestSeedBasicExample runs the seed README's first example verbatim.
func TestSeedBasicExample(t *testing.T) {
	dir := t.TempDir()
	r := gvi(t, dir, "single", "basic-disk-image", "20G")
	resp := r.result(t)
	if r.code != 0 || resp.Status != "success" {
		t.Fatalf("exit %d: %+v", r.code, resp)
	}
	// The exact shape of the reference's JSON result.
	want := "{\n    \"response\": \"\",\n    \"return_code\": 0,\n    \"status\": \"success\",\n    \"verbose_messages\": []\n}\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	path := filepath.Join(dir, "generated-images", "basic-disk-image.qcow2")
	oracle.AssertQcow2(t, path, 20<<30)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 1<<20 {
		t.Errorf("a blank 20G qcow2 takes %d bytes", st.Size())
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("image mode %v, want -rw-r--r-- as qemu-img makes them", st.Mode().Perm())
	}
	assertNoTempFiles(t, filepath.Join(dir, "generated-images"))
}

func TestBlankImages(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		file   string
		format string
		size   int64
	}{
		{"raw 20G", []string{"single", "disk", "20G", "-of", "raw"}, "disk.raw", "raw", 20 << 30},
		{"qcow2 16T", []string{"single", "big", "16T"}, "big.qcow2", "qcow2", 16 << 40},
		{"options first", []string{"-of", "qcow2", "-V", "9.4", "single", "x", "1G"}, "", "", 0},
		{"options before positionals", []string{"single", "-od", "out", "-of", "raw", "-V", "9.4", "named", "512M"}, "out/named-9.4.raw", "raw", 512 << 20},
		{"long options", []string{"single", "--output-directory=out2", "--output-format", "qcow2", "--version", "12", "v", "1M"}, "out2/v-12.qcow2", "qcow2", 1 << 20},
		{"abbreviated long option", []string{"single", "--output-dir", "out3", "a", "1K"}, "out3/a.qcow2", "qcow2", 1024},
		{"plain bytes, rounded to a sector as qemu-img does", []string{"single", "b", "1000000", "-of", "raw"}, "b.raw", "raw", 1000448},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			r := gvi(t, dir, tc.args...)
			if tc.file == "" { // options before the command are not the command's
				if r.code != 2 {
					t.Fatalf("exit %d, want a usage error", r.code)
				}
				return
			}
			if resp := r.result(t); r.code != 0 {
				t.Fatalf("exit %d: %+v", r.code, resp)
			}
			path := tc.file
			if !strings.Contains(path, "/") {
				path = filepath.Join("generated-images", path)
			}
			path = filepath.Join(dir, path)
			if tc.format == "qcow2" {
				oracle.AssertQcow2(t, path, tc.size)
			} else {
				info := oracle.ImageInfo(t, path)
				if info.Format != "raw" || info.VirtualSize != tc.size {
					t.Fatalf("info %+v", info)
				}
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"bad size", []string{"single", "a", "10GB"}, 5, `"10GB"`},
		{"words for size", []string{"single", "a", "ten"}, 5, `"ten"`},
		{"unknown output format", []string{"single", "a", "1G", "-of", "qed2"}, 5, "qcow2"},
		{"missing input", []string{"single", "a", "1G", "-i", "no/such/file.qcow2"}, 1, "no/such/file.qcow2"},
		{"checksum without type", []string{"single", "a", "1G", "-i", "x", "-ic", "abc"}, 4, "input_checksum_type"},
		{"unknown checksum type", []string{"single", "a", "1G", "-i", "x", "-ict", "sha999", "-ic", "abc"}, 5, "sha999"},
		{"name escapes", []string{"single", "../evil", "1G"}, 5, "separator"},
		{"version escapes", []string{"single", "ok", "1G", "-V", "1/../../x"}, 5, "separator"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := gvi(t, dir, tc.args...)
			resp := r.result(t)
			if r.code != tc.code || resp.Status != "failed" || !strings.Contains(resp.Response, tc.msg) {
				t.Fatalf("exit %d, %+v; want code %d and a message with %q", r.code, resp, tc.code, tc.msg)
			}
		})
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "generated-images")); len(entries) != 0 {
		t.Errorf("failed runs left files: %v", entries)
	}
}

func TestOverwrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "generated-images", "keep.raw")
	if r := gvi(t, dir, "single", "keep", "1M", "-of", "raw"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	// Without --overwrite an existing image is kept and the run succeeds.
	r := gvi(t, dir, "single", "keep", "2M", "-of", "raw", "-v")
	resp := r.result(t)
	if r.code != 0 || !strings.Contains(strings.Join(resp.VerboseMessages, "\n"), "already exists") {
		t.Fatalf("exit %d %+v", r.code, resp)
	}
	if st, _ := os.Stat(path); st.Size() != 1<<20 {
		t.Fatalf("existing image changed to %d bytes", st.Size())
	}
	// With --overwrite it is replaced.
	if r := gvi(t, dir, "single", "keep", "2M", "-of", "raw", "--overwrite"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if st, _ := os.Stat(path); st.Size() != 2<<20 {
		t.Fatalf("image not replaced: %d bytes", st.Size())
	}
	// A failed overwrite leaves the old image whole.
	if r := gvi(t, dir, "single", "keep", "3M", "-of", "raw", "--overwrite", "-i", "missing.img"); r.code != 1 {
		t.Fatalf("exit %d", r.code)
	}
	if st, _ := os.Stat(path); st.Size() != 2<<20 {
		t.Fatalf("failed overwrite changed the image: %d bytes", st.Size())
	}
	assertNoTempFiles(t, filepath.Join(dir, "generated-images"))
}

func TestVerboseMessages(t *testing.T) {
	dir := t.TempDir()
	r := gvi(t, dir, "single", "v", "1G", "--verbose")
	resp := r.result(t)
	if len(resp.VerboseMessages) == 0 || !strings.Contains(strings.Join(resp.VerboseMessages, "\n"), "Generated image at") {
		t.Fatalf("verbose messages: %+v", resp)
	}
	r = gvi(t, dir, "single", "q", "1G")
	if resp := r.result(t); len(resp.VerboseMessages) != 0 {
		t.Fatalf("messages without -v: %+v", resp)
	}
}

// TestMultipleAdvanced runs the Python tool's own advanced architecture file
// from a directory where its input paths resolve.
func TestMultipleAdvanced(t *testing.T) {
	corpus := testcorpus.Dir(t)
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tests", "res"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(corpus, "gen-vm-image", "test.qcow2"), filepath.Join(dir, "tests", "res", "test.qcow2")); err != nil {
		t.Fatal(err)
	}
	archFile := filepath.Join(corpus, "..", "reference", "tests_res_advanced_architecture.yml")
	if _, err := os.Stat(archFile); err != nil {
		t.Skipf("reference architecture file absent: %v", err)
	}
	out := filepath.Join(dir, "out")
	r := gvi(t, dir, "multiple", archFile, "-od", out, "-v")
	resp := r.result(t)
	blank := map[string]int64{
		"test-image-1-9.4.qcow2": 10 << 30, "test-image-2-9.4.raw": 10 << 30, "test-image-3-8.4.qcow2": 30 << 30,
		"test-image-4-8.4.raw": 30 << 30, "test-image-5-9.4.raw": 30 << 30, "non-version-image.raw": 10 << 30,
		"image-with-output-path-9.4.qcow2": 10 << 30,
	}
	based := map[string]int64{"input-path-image-12.qcow2": 20 << 30, "convert_input_image_format-12.raw": 20 << 30}
	for name, size := range blank {
		checkImage(t, filepath.Join(out, name), size)
	}
	inputsWork := r.code == 0
	for name, size := range based {
		if !inputsWork {
			break
		}
		checkImage(t, filepath.Join(out, name), size)
		oracle.AssertSame(t, filepath.Join(dir, "tests", "res", "test.qcow2"), "qcow2", filepath.Join(out, name), formatOf(name))
	}
	if !inputsWork {
		t.Errorf("images with inputs failed: exit %d %s", r.code, resp.Response)
	}
	if !strings.Contains(strings.Join(resp.VerboseMessages, "\n"), "output") {
		t.Errorf("the unknown key 'output' was not mentioned: %v", resp.VerboseMessages)
	}
	assertNoTempFiles(t, out)
}

func formatOf(name string) string { return strings.TrimPrefix(filepath.Ext(name), ".") }

func checkImage(t *testing.T, path string, size int64) {
	t.Helper()
	if formatOf(path) == "qcow2" {
		oracle.AssertQcow2(t, path, size)
		return
	}
	info := oracle.ImageInfo(t, path)
	if info.Format != "raw" || info.VirtualSize != size {
		t.Fatalf("%s: %+v", path, info)
	}
}

func TestMultipleKeepsGoing(t *testing.T) {
	dir := t.TempDir()
	arch := filepath.Join(dir, "arch.yml")
	archText := `owner: me
images:
  good-1:
    name: good-1
    size: 1G
  broken:
    name: broken
    size: 1G
    input:
      path: missing.qcow2
  good-2:
    name: good-2
    format: raw
    size: 1M
`
	writeFile(t, arch, archText)
	r := gvi(t, dir, "multiple", arch)
	resp := r.result(t)
	if r.code != 1 || !strings.Contains(resp.Response, "broken") || !strings.Contains(resp.Response, "1 of 3") {
		t.Fatalf("exit %d %+v", r.code, resp)
	}
	for _, f := range []string{"good-1.qcow2", "good-2.raw"} {
		if _, err := os.Stat(filepath.Join(dir, "generated-images", f)); err != nil {
			t.Errorf("%s not built: %v", f, err)
		}
	}
	// --fail-fast stops at the first failure, as the Python tool does.
	// One job, and good-2 reads an input the one local fetcher reaches
	// only after broken's: nothing but the order of the file decides
	// (with a free slot, an image without an input may start while
	// broken's input is still being looked for).
	dir2 := t.TempDir()
	writeFile(t, filepath.Join(dir2, "small.raw"), strings.Repeat("\x00", 1<<20))
	failFast := filepath.Join(dir2, "arch.yml")
	writeFile(t, failFast, strings.Replace(archText, "    size: 1M\n", "    size: 1M\n    input:\n      path: small.raw\n", 1))
	r = gvi(t, dir2, "multiple", "--fail-fast", "-j", "1", failFast)
	if r.code != 1 {
		t.Fatalf("fail-fast exit %d", r.code)
	}
	if _, err := os.Stat(filepath.Join(dir2, "generated-images", "good-2.raw")); err == nil {
		t.Error("--fail-fast built images after the failure")
	}
	// --overwrite is passed on (the Python tool dropped it).
	before, _ := os.Stat(filepath.Join(dir, "generated-images", "good-2.raw"))
	writeFile(t, arch, "owner: me\nimages:\n  g:\n    name: good-2\n    format: raw\n    size: 2M\n")
	if r := gvi(t, dir, "multiple", arch); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if st, _ := os.Stat(filepath.Join(dir, "generated-images", "good-2.raw")); st.Size() != before.Size() {
		t.Fatal("image replaced without --overwrite")
	}
	if r := gvi(t, dir, "multiple", arch, "--overwrite"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if st, _ := os.Stat(filepath.Join(dir, "generated-images", "good-2.raw")); st.Size() != 2<<20 {
		t.Fatalf("--overwrite not honoured: %d bytes", st.Size())
	}
}

func TestMultipleValidation(t *testing.T) {
	dir := t.TempDir()
	arch := filepath.Join(dir, "bad.yml")
	writeFile(t, arch, `owner: me
images:
  one:
    size: 1G
  two:
    name: two
    size: lots
  three:
    name: three
    size: 1G
    input:
      path: a
      url: http://example.invalid/b
`)
	r := gvi(t, dir, "multiple", arch)
	resp := r.result(t)
	if r.code != 4 {
		t.Errorf("exit %d, want 4 (a required key is missing)", r.code)
	}
	for _, want := range []string{":3:", "name", ":7:", `"lots"`, ":13:", "both path"} {
		if !strings.Contains(resp.Response, want) {
			t.Errorf("response lacks %q:\n%s", want, resp.Response)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "generated-images", "three.qcow2")); err == nil {
		t.Error("an image was built from an invalid file")
	}
	if r := gvi(t, dir, "multiple", filepath.Join(dir, "nope.yml")); r.code != 1 {
		t.Errorf("missing file: exit %d", r.code)
	}
	writeFile(t, arch, "owner: [unclosed\n")
	if r := gvi(t, dir, "multiple", arch); r.code != 2 {
		t.Errorf("broken YAML: exit %d %s", r.code, r.stderr)
	}
}

func TestJSONRequest(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(binary, "json")
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(`{"name": "corc", "size": "1G", "version": 9.4, "format": "qcow2", "output_directory": "imgs", "overwrite": false, "verbose": true}`)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var resp response
	if err := json.Unmarshal(out, &resp); err != nil || resp.Status != "success" || len(resp.VerboseMessages) == 0 {
		t.Fatalf("%v %s", err, out)
	}
	oracle.AssertQcow2(t, filepath.Join(dir, "imgs", "corc-9.4.qcow2"), 1<<30)

	cmd = exec.Command(binary, "json")
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(`{"name": `)
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 9 {
		t.Fatalf("bad JSON: %v", err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}
