package genvm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// TestVHDXEndToEnd: single makes VHDX images (blank, fixed, converted from
// a qemu-made VHDX and resized), checked before they are put in place,
// that qemu-img checks and finds identical to their source; a bad option
// is refused naming the valid ones.
func TestVHDXEndToEnd(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.vhdx")
	raw := filepath.Join(dir, "in.raw")
	if err := os.WriteFile(raw, []byte(strings.Repeat("gen-vm-image ", 300000)), 0o644); err != nil {
		t.Fatal(err)
	}
	oracle.MustRun(t, "convert", "-f", "raw", "-O", "vhdx", "-o", "block_size=1M", raw, in)
	out := filepath.Join(dir, "out")
	for _, tc := range []struct {
		name string
		spec Spec
	}{
		{"blank", Spec{Name: "blank", Size: "3G", Format: "vhdx"}},
		{"fixed", Spec{Name: "fixed", Size: "5M", Format: "vhdx", FormatOptions: map[string]string{"subformat": "fixed", "block_size": "1M"}}},
		{"from-vhdx", Spec{Name: "from-vhdx", Size: "1G", Format: "vhdx", Input: &Input{Path: in}, FormatOptions: map[string]string{"log_size": "2M"}}},
		{"vhdx-to-qcow2", Spec{Name: "vhdx-to-qcow2", Size: "1G", Format: "qcow2", Input: &Input{Path: in}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.OutputDirectory = out
			res, err := Generate(context.Background(), tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if r, code := oracle.Check(t, res.Path, tc.spec.Format); code != 0 || r.CheckErrors != 0 || r.Corruptions != 0 {
				t.Fatalf("qemu-img check: %d %+v", code, r)
			}
			if tc.spec.Input != nil {
				oracle.MustRun(t, "compare", "-f", "vhdx", "-F", tc.spec.Format, in, res.Path)
			}
		})
	}
	_, err := Generate(context.Background(), Spec{Name: "bad", Size: "1G", Format: "vhdx", OutputDirectory: out, FormatOptions: map[string]string{"cluster_size": "1M"}})
	if CodeOf(err) != CodeInvalidAttribute || !strings.Contains(err.Error(), "subformat, block_size, log_size") {
		t.Fatalf("cluster_size=1M: code %d: %v", CodeOf(err), err)
	}
}
