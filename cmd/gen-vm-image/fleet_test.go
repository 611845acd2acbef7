package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	genvm "github.com/ucphhpc/gen-vm-image-go"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// fleetArchitecture writes an architecture of eight images from two URLs
// of srv (four each, verified), qcow2 and raw, of different sizes.
func fleetArchitecture(t *testing.T, dir string, srv *imageServer, a, b []byte) string {
	t.Helper()
	var s strings.Builder
	s.WriteString("owner: fleet\nimages:\n")
	for i := range 8 {
		src, data, format := "a.raw", a, "qcow2"
		if i%2 == 1 {
			src, data = "b.raw", b
		}
		if i%4 >= 2 {
			format = "raw"
		}
		fmt.Fprintf(&s, "  img%d:\n    name: img%d\n    size: %dM\n    format: %s\n    input:\n      url: %s/%s\n      checksum: {type: sha256, value: %s}\n",
			i, i, 8+i, format, srv.URL, src, sha256hex(data))
	}
	path := filepath.Join(dir, "fleet.yml")
	writeFile(t, path, s.String())
	return path
}

func fleetData() (a, b []byte) {
	a, b = make([]byte, 4<<20), make([]byte, 6<<20)
	for i := 0; i < len(a); i += 32 << 10 {
		copy(a[i:], "fleet input a "+strconv.Itoa(i))
	}
	for i := 0; i < len(b); i += 48 << 10 {
		copy(b[i:], "fleet input b "+strconv.Itoa(i))
	}
	return a, b
}

// TestMultipleJobs: multiple -j 2 builds eight images from two URLs, each
// fetched once; every image is right (qemu-img check and compare).
func TestMultipleJobs(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	a, b := fleetData()
	srv := newImageServer(t, map[string][]byte{"/a.raw": a, "/b.raw": b})
	yml := fleetArchitecture(t, dir, srv, a, b)
	writeFile(t, filepath.Join(dir, "a.raw"), string(a))
	writeFile(t, filepath.Join(dir, "b.raw"), string(b))
	out := filepath.Join(dir, "out")
	r := gvi(t, dir, "multiple", yml, "-od", out, "-j", "2", "--cache-dir", filepath.Join(dir, "cache"), "-v")
	if resp := r.result(t); r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, resp.Response)
	}
	for _, p := range []string{"/a.raw", "/b.raw"} {
		if n := srv.requests(p); n != 1 {
			t.Errorf("%s requested %d times, want once", p, n)
		}
	}
	for i := range 8 {
		format, src := "qcow2", "a.raw"
		if i%4 >= 2 {
			format = "raw"
		}
		if i%2 == 1 {
			src = "b.raw"
		}
		path := filepath.Join(out, fmt.Sprintf("img%d.%s", i, format))
		if format == "qcow2" {
			oracle.AssertQcow2(t, path, int64(8+i)<<20)
		}
		oracle.AssertSame(t, filepath.Join(dir, src), "raw", path, format)
	}
	assertNoTempFiles(t, out)
}

// TestMultipleTwoRunsOneCache: two multiple runs at once on the same cache
// (and output directory) download each URL once between them, and every
// image is right.
func TestMultipleTwoRunsOneCache(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	a, b := fleetData()
	srv := newImageServer(t, map[string][]byte{"/a.raw": a, "/b.raw": b})
	yml := fleetArchitecture(t, dir, srv, a, b)
	writeFile(t, filepath.Join(dir, "a.raw"), string(a))
	out := filepath.Join(dir, "out")
	var wg sync.WaitGroup
	results := make([]runResult, 2)
	for i := range 2 {
		wg.Go(func() {
			results[i] = gvi(t, dir, "multiple", yml, "-od", out, "-j", "4", "--cache-dir", filepath.Join(dir, "cache"))
		})
	}
	wg.Wait()
	for i, r := range results {
		if resp := r.result(t); r.code != 0 {
			t.Errorf("run %d: exit %d: %s", i, r.code, resp.Response)
		}
	}
	for _, p := range []string{"/a.raw", "/b.raw"} {
		if n := srv.requests(p); n != 1 {
			t.Errorf("%s requested %d times by the two runs, want once", p, n)
		}
	}
	for i := 0; i < 8; i += 4 {
		oracle.AssertQcow2(t, filepath.Join(out, fmt.Sprintf("img%d.qcow2", i)), int64(8+i)<<20)
		oracle.AssertSame(t, filepath.Join(dir, "a.raw"), "raw", filepath.Join(out, fmt.Sprintf("img%d.qcow2", i)), "qcow2")
	}
	assertNoTempFiles(t, out)
}

// TestMultipleKeysAndJobsOption: KEY... builds those images only; an
// unknown key is code 5 with the key meant; --jobs must be a count.
func TestMultipleKeysAndJobsOption(t *testing.T) {
	dir := t.TempDir()
	yml := filepath.Join(dir, "a.yml")
	writeFile(t, yml, "owner: o\nimages:\n  web-server: {name: web, size: 1M}\n  db-server: {name: db, size: 1M, format: raw}\n  cache: {name: cache, size: 1M}\n")
	out := filepath.Join(dir, "out")
	r := gvi(t, dir, "multiple", yml, "cache", "web-server", "-od", out, "-j", "1")
	if resp := r.result(t); r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, resp.Response)
	}
	names := imageFiles(t, out)
	if strings.Join(names, " ") != "cache.qcow2 web.qcow2" {
		t.Errorf("built %v, want cache.qcow2 web.qcow2", names)
	}
	r = gvi(t, dir, "multiple", yml, "db-sever", "-od", out)
	resp := r.result(t)
	if r.code != 5 || !strings.Contains(resp.Response, `"db-sever" (did you mean "db-server"?)`) {
		t.Errorf("unknown key: exit %d, %q", r.code, resp.Response)
	}
	// A key of the file that falls to another shard is no error: that
	// shard builds it.
	other := 1 - genvm.ShardOf("cache", 2)
	r = gvi(t, dir, "multiple", yml, "cache", "-od", filepath.Join(dir, "shard"), "--shard", fmt.Sprintf("%d/2", other))
	if resp := r.result(t); r.code != 0 || !strings.Contains(resp.Response, "Nothing to build") {
		t.Errorf("a key of another shard: exit %d, %q", r.code, resp.Response)
	}
	for _, bad := range []string{"0", "x", "-3"} {
		r = gvi(t, dir, "multiple", yml, "-od", out, "--jobs="+bad)
		if resp := r.result(t); r.code != 5 || !strings.Contains(resp.Response, "--jobs") {
			t.Errorf("--jobs=%s: exit %d, %q", bad, r.code, resp.Response)
		}
	}
}

// screen replays what a program wrote to a terminal, with the cursor
// movements the progress of a build uses: "\r", "\n", ESC[nA (up n lines)
// and ESC[K (clear to the end of the line). It returns the lines left and
// the widest line ever drawn.
func screen(out []byte) (lines []string, widest int) {
	var rows [][]rune
	row, col := 0, 0
	s := []rune(string(out))
	for i := 0; i < len(s); i++ {
		for len(rows) <= row {
			rows = append(rows, nil)
		}
		switch r := s[i]; {
		case r == '\r':
			col = 0
		case r == '\n':
			row++
			col = 0
		case r == 0x1b && i+1 < len(s) && s[i+1] == '[':
			j := i + 2
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			n, _ := strconv.Atoi(string(s[i+2 : j]))
			switch s[j] {
			case 'A':
				row = max(row-max(n, 1), 0)
			case 'K':
				if col < len(rows[row]) {
					rows[row] = rows[row][:col]
				}
			}
			i = j
		default:
			if col < len(rows[row]) {
				rows[row][col] = r
			} else {
				rows[row] = append(rows[row], r)
			}
			col++
			widest = max(widest, col)
		}
	}
	for _, r := range rows {
		if len(r) > 0 {
			lines = append(lines, string(r))
		}
	}
	return lines, widest
}
