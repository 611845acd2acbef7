package main

import (
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"

	"github.com/ucphhpc/gen-vm-image-go/record"
)

// imageFiles names what dir holds besides the record.
func imageFiles(t testing.TB, dir string) []string {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		switch e.Name() {
		case record.SumsName, record.ManifestName, ".gen-vm-image.lock":
		default:
			names = append(names, e.Name())
		}
	}
	return names
}

// recordArch writes an architecture of n images from one URL and one
// local file (qcow2 and raw, different sizes) and returns its path.
func recordArch(t *testing.T, dir, url, local string, n int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("owner: test\nimages:\n")
	for i := range n {
		format := []string{"qcow2", "raw"}[i%2]
		in := "url: " + url
		if i%3 == 2 {
			in = "path: " + local
		}
		fmt.Fprintf(&b, "  img%d:\n    name: img%d\n    size: %dM\n    format: %s\n    input:\n      %s\n", i, i, 4+i, format, in)
	}
	path := filepath.Join(dir, "arch.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// treeOf lists every file under dir with its size and time.
func treeOf(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, _ := d.Info()
		fmt.Fprintf(&b, "%s %d %v\n", path, info.Size(), info.ModTime().UnixNano())
		return nil
	})
	return b.String()
}

// loggingServer serves dir and logs each request's method and path, and
// whether it was conditional (a revalidation: 304, nothing sent).
func loggingServer(t *testing.T, dir string) (*httptest.Server, func() []string) {
	var mu sync.Mutex
	var log []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conditional := ""
		if r.Header.Get("If-None-Match") != "" || r.Header.Get("If-Modified-Since") != "" {
			conditional = " (conditional)"
		}
		log = append(log, r.Method+" "+r.URL.Path+conditional)
		mu.Unlock()
		http.ServeFile(w, r, filepath.Join(dir, filepath.Base(r.URL.Path)))
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(log) }
}

func sha256sumC(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command("sha256sum", "-c", "--strict", record.SumsName)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c in %s: %v\n%s", dir, err, b)
	}
}

// TestMultipleRecordDryRunUpdate: a dry run writes and GETs nothing and
// says what a run would do; the run writes a record sha256sum accepts;
// a rerun with --update builds nothing; two runs at once on the same
// directory and cache lose no entry.
func TestMultipleRecordDryRunUpdate(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	served := filepath.Join(dir, "served")
	os.MkdirAll(served, 0o755)
	local := filepath.Join(dir, "local.qcow2")
	raw := filepath.Join(dir, "local.raw")
	data := make([]byte, 3<<20)
	for i := 64 << 10; i < 264<<10; i++ {
		data[i] = byte(i * 7)
	}
	os.WriteFile(raw, data, 0o644)
	oracle.MustRun(t, "convert", "-q", "-O", "qcow2", raw, local)
	oracle.MustRun(t, "convert", "-q", "-O", "qcow2", local, filepath.Join(served, "web.qcow2"))
	srv, requests := loggingServer(t, served)
	arch := recordArch(t, dir, srv.URL+"/web.qcow2", local, 6)
	out := filepath.Join(dir, "out")
	cache := filepath.Join(dir, "cache")

	before := treeOf(t, dir)
	r := gvi(t, dir, "multiple", arch, "-od", out, "--cache-dir", cache, "--dry-run")
	resp := r.result(t)
	if r.code != 0 || !strings.Contains(resp.Response, "Dry run, nothing written: build 6") || len(resp.VerboseMessages) != 7 {
		t.Fatalf("dry run: exit %d %+v\n%s", r.code, resp, r.stderr)
	}
	if !strings.Contains(resp.VerboseMessages[0], "img0: build; "+filepath.Join(out, "img0.qcow2")+", virtual size 4 MiB") ||
		!strings.Contains(resp.VerboseMessages[0], "(to download, ") || !strings.Contains(resp.VerboseMessages[2], "(local file)") {
		t.Errorf("dry run says:\n%s", strings.Join(resp.VerboseMessages, "\n"))
	}
	if after := treeOf(t, dir); after != before {
		t.Errorf("a dry run changed the tree:\n%s\n%s", before, after)
	}
	if got := requests(); slices.ContainsFunc(got, func(s string) bool { return !strings.HasPrefix(s, "HEAD ") }) {
		t.Errorf("a dry run made %v", got)
	}

	if r := gvi(t, dir, "multiple", arch, "-od", out, "--cache-dir", cache, "-j", "2"); r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	sha256sumC(t, out)
	if files := imageFiles(t, out); len(files) != 6 {
		t.Fatalf("built %v", files)
	}

	r = gvi(t, dir, "multiple", arch, "-od", out, "--cache-dir", cache, "--update", "-v")
	resp = r.result(t)
	if r.code != 0 || !strings.Contains(resp.Response, "Built 0 of 6 images") || !strings.Contains(resp.Response, "6 were up to date") {
		t.Fatalf("update: exit %d %+v", r.code, resp)
	}
	r = gvi(t, dir, "multiple", arch, "-od", out, "--cache-dir", cache, "--update", "--dry-run")
	if resp := r.result(t); !strings.Contains(resp.Response, "up to date 6") {
		t.Errorf("dry run after the build: %s", resp.Response)
	}

	// Two runs at once, each its half of a bigger architecture, into the
	// same directory and cache: the record ends with every image.
	big := recordArch(t, dir, srv.URL+"/web.qcow2", local, 10)
	var wg sync.WaitGroup
	results := make([]runResult, 2)
	halves := [][]string{{"img6", "img8", "img1"}, {"img7", "img9", "img3"}}
	for i, keys := range halves {
		wg.Go(func() {
			results[i] = gvi(t, dir, append([]string{"multiple", big, "-od", out, "--cache-dir", cache, "--overwrite"}, keys...)...)
		})
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Fatalf("run %d: exit %d\n%s", i, r.code, r.stderr)
		}
	}
	sha256sumC(t, out)
	m, err := record.Read(out)
	if err != nil || len(m.Images) != 10 {
		t.Fatalf("the record after two runs at once: %v, %d images", err, len(m.Images))
	}
	for _, e := range m.Images {
		info := oracle.ImageInfo(t, filepath.Join(out, e.File))
		if info.VirtualSize != e.VirtualSize || info.Format != e.Format {
			t.Errorf("%s: recorded %s %d; qemu-img says %s %d", e.File, e.Format, e.VirtualSize, info.Format, info.VirtualSize)
		}
	}
	gets := 0
	for _, r := range requests() {
		if r == "GET /web.qcow2" {
			gets++
		}
	}
	if gets != 1 {
		t.Errorf("the URL was fetched %d times: %v", gets, requests())
	}
}
