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
	"strings"
	"syscall"
	"testing"
	"time"
)

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
