package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// TestInfoShowsInspection: `info` describes an image that would be refused
// as an input, and says why it would be (SECURITY.md).
func TestInfoShowsInspection(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	overlay := filepath.Join(dir, "overlay.qcow2")
	oracle.MustRun(t, "create", "-q", "-f", "qcow2", base, "1M")
	oracle.MustRun(t, "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", overlay)
	r := gvi(t, dir, "info", "--as-input", overlay)
	if r.code != 0 || !strings.Contains(r.stdout, "as an input: refused: ") || !strings.Contains(r.stdout, "overlay on the backing file") {
		t.Errorf("info on an overlay: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = gvi(t, dir, "info", "--as-input", base)
	if r.code != 0 || !strings.Contains(r.stdout, "as an input: accepted by inspection") {
		t.Errorf("info on a plain image: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// A format recognised and inspected but not readable yet is described,
	// and said to be unreadable.
	qcow := filepath.Join(dir, "disk.qcow")
	oracle.MustRun(t, "create", "-q", "-f", "qcow", qcow, "1M")
	r = gvi(t, dir, "info", "--as-input", qcow)
	if r.code != 0 || !strings.Contains(r.stdout, "virtual size: 1 MiB (1048576 bytes)") ||
		!strings.Contains(r.stdout, "as an input: accepted by inspection, but this version cannot read qcow images yet") {
		t.Errorf("info on a qcow: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// An overlay is refused as an input with code 2, and the image it would
	// have read is not opened (see genvm.TestImagesOpenNothingElse).
	r = gvi(t, dir, "single", "x", "1M", "-i", overlay)
	if resp := r.result(t); r.code != 2 || !strings.Contains(resp.Response, "overlay on the backing file") {
		t.Errorf("single -i overlay: exit %d %+v", r.code, resp)
	}
}
