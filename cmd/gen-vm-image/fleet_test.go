package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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
	entries, _ := os.ReadDir(out)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "cache.qcow2 web.qcow2" {
		t.Errorf("built %v, want cache.qcow2 web.qcow2", names)
	}
	r = gvi(t, dir, "multiple", yml, "db-sever", "-od", out)
	resp := r.result(t)
	if r.code != 5 || !strings.Contains(resp.Response, `"db-sever" (did you mean "db-server"?)`) {
		t.Errorf("unknown key: exit %d, %q", r.code, resp.Response)
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

// TestMultipleProgressOnATerminal: on a terminal of 60 columns, the lines
// of the images at work and the total never go past its width, and when
// the build is over they are gone, replaced by a table of the images;
// stdout holds the JSON result only.
func TestMultipleProgressOnATerminal(t *testing.T) {
	dir := t.TempDir()
	raw, _ := patternImage(t, dir, 24<<20, false)
	yml := filepath.Join(dir, "a.yml")
	var s strings.Builder
	s.WriteString("owner: o\nimages:\n")
	for i := range 4 {
		fmt.Fprintf(&s, "  img%d: {name: an-image-with-a-rather-long-name-%d, size: 64M, input: {path: %s}}\n", i, i, raw)
	}
	s.WriteString("  broken: {name: broken, size: 1M, input: {path: " + filepath.Join(dir, "missing.raw") + "}}\n")
	writeFile(t, yml, s.String())
	const width = 60
	master, slave := openPTY(t, width)
	cmd := exec.Command(binary, "multiple", yml, "-od", filepath.Join(dir, "out"), "-j", "2")
	cmd.Dir = dir
	cmd.Stderr = slave
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	out, _ := io.ReadAll(master)
	cmd.Wait()
	lines, _ := screen(out)
	progress, table, _ := bytes.Cut(out, []byte("IMAGE"))
	_, widest := screen(progress)
	tableLines, tableWidest := screen(append([]byte("IMAGE"), table...))
	if i := slices.Index(tableLines, "{"); i > 0 {
		_, tableWidest = screen([]byte(strings.Join(tableLines[:i], "\n")))
	}
	if widest > width || tableWidest > width {
		t.Errorf("a line %d columns wide on a terminal of %d:\n%q", widest, width, out)
	}
	if !bytes.Contains(out, []byte("total ")) || !bytes.Contains(out, []byte("convert")) {
		t.Errorf("no progress drawn:\n%q", out)
	}
	// The names are shortened in the middle to fit.
	want := []string{"IMAGE", "an-image-with-…ng-name-0.qcow2 ", "an-image-with-…ng-name-3.qcow2 ", "broken.qcow2 "}
	// The table, then the JSON result (on stderr: an image failed).
	if len(lines) < 7 || lines[6] != "{" {
		t.Fatalf("the screen holds, want the table's 6 lines then the result:\n%s", strings.Join(lines, "\n"))
	}
	for i, w := range []int{0, 1, 4, 5} {
		if !strings.HasPrefix(lines[w], want[i]) {
			t.Errorf("line %d: %q, want it to start with %q", w, lines[w], want[i])
		}
	}
	if !strings.Contains(lines[1], "built") || !strings.Contains(lines[5], "failed (1)") {
		t.Errorf("table:\n%s", strings.Join(lines, "\n"))
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q", stdout.String())
	}
}

// TestSignalDuringFleet interrupts multiple -j 4 while images convert and
// one waits for a slow download: the run exits 130 saying it was
// interrupted, and leaves no image and no temporary file.
func TestSignalDuringFleet(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.raw")
	slowInput(t, in, 2<<30)
	big := bytes.Repeat([]byte{0x5a}, 16<<20)
	srv := newTrickleServer(t, map[string][]byte{"/big.raw": big})
	yml := filepath.Join(dir, "a.yml")
	writeFile(t, yml, fmt.Sprintf(`owner: o
images:
  c1: {name: c1, size: 2G, input: {path: %[1]s}}
  c2: {name: c2, size: 2G, format: raw, input: {path: %[1]s}}
  dl: {name: dl, size: 32M, input: {url: %[2]s/big.raw}}
  c3: {name: c3, size: 2G, input: {path: %[1]s}}
`, in, srv.URL))
	out := filepath.Join(dir, "out")
	cmd := exec.Command(binary, "multiple", yml, "-od", out, "-j", "4", "--cache-dir", filepath.Join(dir, "cache"))
	cmd.Dir = dir
	var stderr bytes.Buffer
	temps := func() bool {
		entries, _ := os.ReadDir(out)
		n := 0
		for _, e := range entries {
			if strings.Contains(e.Name(), ".tmp-") {
				n++
			}
		}
		return n >= 2
	}
	err := interruptWhen(t, cmd, &stderr, temps, "two conversions", 50*time.Millisecond, syscall.SIGINT)
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 130 {
		t.Fatalf("exit %v; want 130\n%s", err, stderr.String())
	}
	var resp response
	if err := json.Unmarshal(stderr.Bytes(), &resp); err != nil || resp.ReturnCode != 130 || !strings.HasPrefix(resp.Response, "Interrupted") {
		t.Errorf("the result does not say it was interrupted:\n%s", stderr.String())
	}
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		t.Errorf("left in the output directory: %s", e.Name())
	}
}
