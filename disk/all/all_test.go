package all

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/testcorpus"
)

// TestCorpusFormats: every kept corpus file is named as qemu-img names it
// (qemu-img probes a fixed VHD as raw; we see its footer and say vpc).
func TestCorpusFormats(t *testing.T) {
	dir := testcorpus.Dir(t)
	want := map[string]string{"qcow2": "qcow2", "vmdk": "vmdk", "vpc": "vpc", "vhdx": "vhdx", "parallels": "parallels",
		"bochs": "bochs", "dmg": "dmg", "cloop": "cloop", "qcow": "qcow", "raw": "raw"}
	for _, e := range testcorpus.Manifest(t) {
		if e.NotKept || strings.HasSuffix(e.File, ".bz2") || strings.HasSuffix(e.File, ".zip") {
			continue
		}
		expect, ok := want[e.QemuFormat]
		if !ok {
			continue // qemu-img could not open it; nothing to compare
		}
		t.Run(e.File, func(t *testing.T) {
			f, err := os.Open(filepath.Join(dir, e.File))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			got, err := disk.Detect(f, st.Size())
			if err != nil {
				t.Fatal(err)
			}
			if got != expect {
				t.Errorf("detected %s, qemu-img says %s", got, expect)
			}
		})
	}
}

func TestPolyglot(t *testing.T) {
	// A qcow2 header at the start and a VHD footer at the end.
	path := filepath.Join(t.TempDir(), "poly")
	b := make([]byte, 4096)
	copy(b, "QFI\xfb\x00\x00\x00\x03")
	copy(b[4096-512:], "conectix")
	os.WriteFile(path, b, 0o644)
	f, _ := os.Open(path)
	defer f.Close()
	if name, err := disk.Detect(f, 4096); err == nil {
		t.Fatalf("polyglot detected as %s", name)
	}
}
