package all

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
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

// TestInspectAsQemu: for every format qemu-img writes, the image is
// detected as qemu-img names it, and the format's Inspect accepts it and
// describes it as qemu-img info does (virtual size and cluster size).
func TestInspectAsQemu(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		format string
		args   []string
	}{
		{"qcow2", nil},
		{"raw", nil},
		{"vmdk", nil},
		{"vmdk", []string{"-o", "subformat=streamOptimized"}},
		{"vpc", nil},
		{"vhdx", nil},
		{"vdi", nil},
		{"qed", nil},
		{"parallels", nil},
		{"qcow", nil},
	} {
		t.Run(strings.Join(append([]string{tc.format}, tc.args...), " "), func(t *testing.T) {
			path := filepath.Join(dir, "image."+tc.format)
			oracle.MustRun(t, append(append(append([]string{"create", "-q", "-f", tc.format}, tc.args...), path), "3M")...)
			q := oracle.ImageInfo(t, path)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			r, size := bytes.NewReader(b), int64(len(b))
			name, err := disk.Detect(r, size)
			if err != nil || name != q.Format {
				t.Fatalf("Detect = %q, %v; qemu-img says %s", name, err, q.Format)
			}
			f, _ := disk.Lookup(name)
			facts, err := f.Inspect(r, size, disk.Limits{})
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			info := facts.Info
			if info.Format != q.Format || info.VirtualSize != q.VirtualSize || info.ClusterSize != q.ClusterSize {
				t.Errorf("Inspect describes %+v; qemu-img info says %+v", info, q)
			}
		})
	}
}
