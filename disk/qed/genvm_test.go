package qed_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	genvm "github.com/ucphhpc/gen-vm-image-go"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// TestGenerate: the pipeline (single) makes QED images from a raw input of
// an odd size, grown, with options, and raw images from a QED input
// qemu-img made; qemu-img finds each identical to its source.
func TestGenerate(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	data := make([]byte, 100000) // not a sector or cluster multiple
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range data[:60000] {
		data[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	res, err := genvm.Generate(context.Background(), genvm.Spec{Name: "a", Size: "3M", Format: "qed",
		FormatOptions: map[string]string{"cluster_size": "4K", "table_size": "8"},
		Input:         &genvm.Input{Path: src}, OutputDirectory: out})
	if err != nil {
		t.Fatal(err)
	}
	if info := oracle.ImageInfo(t, res.Path); info.Format != "qed" || info.VirtualSize != 3<<20 || info.ClusterSize != 4096 {
		t.Fatalf("qemu-img info: %+v", info)
	}
	if r, code := oracle.Check(t, res.Path, "qed"); code != 0 || r.Corruptions != 0 || r.Leaks != 0 {
		t.Fatalf("qemu-img check: exit %d, %+v", code, r)
	}
	// compare without -s: the grown part reads as zeros on both sides.
	oracle.AssertSame(t, res.Path, "qed", src, "raw")

	// The other way: a QED image qemu-img made, converted to raw.
	q := filepath.Join(dir, "q.qed")
	oracle.MustRun(t, "convert", "-f", "raw", "-O", "qed", src, q)
	res, err = genvm.Generate(context.Background(), genvm.Spec{Name: "b", Size: "1M", Format: "raw",
		Input: &genvm.Input{Path: q, Format: "qed"}, OutputDirectory: out})
	if err != nil {
		t.Fatal(err)
	}
	oracle.AssertSame(t, res.Path, "raw", q, "qed")
}
