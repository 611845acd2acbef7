package genvm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
	"github.com/ucphhpc/gen-vm-image-go/internal/testcorpus"
)

// TestCorpusMalformedFailCleanly sends every corpus file that is malformed
// on purpose, or that qemu-img itself refuses to open, through the same path
// as `single -i FILE`: each must fail with a *Error that names the file and
// says what is wrong, without a panic, within bounded time and memory, and
// leave nothing in the output directory.
//
// The bounds are generous on purpose (5 s, 100 MiB allocated in total): the
// test must catch a hang or an allocation driven by a hostile header, not
// measure speed on a shared machine. Refusals take microseconds and a few
// MiB (the largest read is a qcow2 header cluster of at most 2 MiB).
func TestCorpusMalformedFailCleanly(t *testing.T) {
	for _, e := range testcorpus.Manifest(t) {
		if !e.Malformed() && !strings.HasPrefix(e.QemuFormat, "ERROR") {
			continue
		}
		// qemu-img refuses a VHDX with a pending log only because it
		// replays logs read-write; we replay them in memory and read the
		// image (disk/vhdx TestCorpus judges that against qemu-img).
		if !e.Malformed() && strings.Contains(e.QemuFormat, "contains a log") {
			continue
		}
		t.Run(e.File, func(t *testing.T) {
			path, ok := testcorpus.Path(t, e, 128<<20)
			if !ok {
				t.Skipf("unpacks to %d bytes", e.Size)
			}
			out := t.TempDir()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			res, err := Generate(context.Background(), Spec{Name: "hostile", Size: "1T", OutputDirectory: out, Input: &Input{Path: path}})
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			var ge *Error
			if !errors.As(err, &ge) {
				t.Fatalf("got %v (%T), %+v; want a *genvm.Error", err, err, res)
			}
			if ge.Code == CodeSuccess || !strings.Contains(ge.Msg, path) || len(ge.Msg) < len(path)+20 {
				t.Fatalf("code %d, message %q: want a failure naming the file and the problem", ge.Code, ge.Msg)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 100<<20 {
				t.Errorf("refusal allocated %d MiB", alloc>>20)
			}
			if entries, _ := os.ReadDir(out); len(entries) != 0 {
				t.Errorf("left behind: %v", entries)
			}
			t.Logf("code %d in %v: %s", ge.Code, elapsed.Round(time.Microsecond), ge.Msg)
		})
	}
}

// TestInputRefusalCodes: a declared format that contradicts the content is
// an invalid attribute (5); an image that is unsafe, unsupported or
// malformed fails to load (2). Both leave nothing behind.
func TestInputRefusalCodes(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	mk := func(name string, args ...string) string {
		p := filepath.Join(dir, name)
		oracle.MustRun(t, append(append([]string{"create", "-q"}, args...), p, "1M")...)
		return p
	}
	plain := mk("plain.qcow2", "-f", "qcow2")
	overlay := filepath.Join(dir, "overlay.qcow2")
	oracle.MustRun(t, "create", "-q", "-f", "qcow2", "-b", plain, "-F", "qcow2", overlay)
	qcow := mk("disk.qcow", "-f", "qcow")
	flat := mk("flat.vmdk", "-f", "vmdk", "-o", "subformat=monolithicFlat")
	tests := []struct {
		name, path, declared string
		code                 int
		msg                  string
	}{
		{"qcow2 declared raw", plain, "raw", CodeInvalidAttribute, "declared as raw but the content is qcow2"},
		{"backing file", overlay, "", CodeLoadFailed, "overlay on the backing file"},
		{"vmdk descriptor file", flat, "", CodeLoadFailed, `names "flat-flat.vmdk"`},
		{"safe qcow (version 1), not readable yet", qcow, "", CodeLoadFailed, "cannot read yet"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			_, err := Generate(context.Background(), Spec{Name: "x", Size: "1G", OutputDirectory: out,
				Input: &Input{Path: tc.path, Format: tc.declared}})
			if CodeOf(err) != tc.code || err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got code %d: %v; want %d with %q", CodeOf(err), err, tc.code, tc.msg)
			}
			if entries, _ := os.ReadDir(out); len(entries) != 0 {
				t.Errorf("left behind: %v", entries)
			}
		})
	}
}
