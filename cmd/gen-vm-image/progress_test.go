package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	genvm "github.com/ucphhpc/gen-vm-image-go"
)

// TestProgressLine: the ETA counts the data left, not the virtual size (a
// run whose last 3.9 GiB are holes ends when its data is done), the line
// says which image of a build it is, and it fits the width it is given.
func TestProgressLine(t *testing.T) {
	b := &progressBar{start: time.Unix(100, 0)}
	now := time.Unix(110, 0) // 10 s in
	ev := genvm.Event{Image: "img.qcow2", Stage: "convert", Done: 100 << 20, Total: 4 << 30,
		Data: 100 << 20, DataTotal: 120 << 20, Index: 2, Count: 5}
	line := b.line(now, ev, 200)
	if !strings.HasPrefix(line, "[2/5] convert img.qcow2 [") || !strings.HasSuffix(line, "ETA 2s") {
		t.Errorf("line %q; want [2/5], the bar and an ETA of the data left (2 s)", line)
	}
	// The data total not known yet: the virtual size is all there is.
	ev.DataTotal = -1
	if line := b.line(now, ev, 200); !strings.Contains(line, "ETA 6m39s") {
		t.Errorf("line %q; want an ETA from the virtual size", line)
	}
	for _, width := range []int{20, 40, 60, 79, 120} {
		ev.Image = strings.Repeat("long-name-", 12) + ".qcow2"
		if line := b.line(now, ev, width); cols(line) > width {
			t.Errorf("width %d: %d columns: %q", width, cols(line), line)
		}
	}
}

// TestSummaryTable: after a build, each image is told once with how it
// ended: a stop's images as stopped or not started, not as failures; the
// space column in qemu-img's three digits.
func TestSummaryTable(t *testing.T) {
	dir := t.TempDir()
	built := filepath.Join(dir, "a.qcow2")
	if err := os.WriteFile(built, make([]byte, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	interrupted := genvm.Errorf(genvm.CodeCreateFailed, context.Canceled, "Interrupted while converting")
	res := &genvm.BuildResult{
		Images: []genvm.ImageResult{
			{Key: "a", Result: genvm.Result{Path: built, Created: true}, Elapsed: 1500 * time.Millisecond},
			{Key: "b", Result: genvm.Result{Path: filepath.Join(dir, "b.qcow2")}},
			{Key: "c", Result: genvm.Result{Path: filepath.Join(dir, "c.vmdk")}, Err: genvm.Errorf(genvm.CodeChecksum, nil, "bad sum"), Elapsed: time.Second},
			{Key: "d", Result: genvm.Result{Path: filepath.Join(dir, "d.qcow2")}, Err: interrupted, Stopped: true, Elapsed: 2 * time.Second},
		},
		NotBuilt: []genvm.ImageResult{
			{Key: "e", Result: genvm.Result{Path: filepath.Join(dir, "e.raw")}, Err: interrupted, Stopped: true, Elapsed: 300 * time.Millisecond},
			{Key: "f", Result: genvm.Result{Path: filepath.Join(dir, "f.raw")}},
		},
	}
	want := map[string]string{"a.qcow2": "built", "b.qcow2": "kept", "c.vmdk": "failed (6)", "d.qcow2": "stopped", "e.raw": "stopped", "f.raw": "not started"}
	lines := strings.Split(strings.TrimSuffix(summaryTable(res, 80), "\n"), "\n")
	if len(lines) != 7 || !strings.HasPrefix(lines[0], "IMAGE") {
		t.Fatalf("table:\n%s", strings.Join(lines, "\n"))
	}
	for _, l := range lines[1:] {
		name, rest, _ := strings.Cut(l, " ")
		if got := strings.TrimSpace(rest); !strings.HasPrefix(got, want[name]) {
			t.Errorf("%s: %q, want %q first", name, got, want[name])
		}
		delete(want, name)
	}
	if len(want) > 0 {
		t.Errorf("not in the table: %v", want)
	}
	if !strings.HasSuffix(lines[1], "1.5s  3 MiB") {
		t.Errorf("built row %q, want its time and 3 MiB", lines[1])
	}
}
