package main

import (
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
