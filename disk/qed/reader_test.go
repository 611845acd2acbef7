package qed

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// qemuIO runs qemu-io commands on an image, or skips like the oracle.
func qemuIO(t testing.TB, path string, cmds ...string) {
	t.Helper()
	oracle.QemuImg(t)
	p, err := exec.LookPath("qemu-io")
	if err != nil {
		if os.Getenv(oracle.RequireEnv) == "1" {
			t.Fatalf("qemu-io not found and %s=1", oracle.RequireEnv)
		}
		t.Skip("qemu-io not found")
	}
	args := []string{"-f", "qed"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	if out, err := exec.Command(p, append(args, path)...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io %v: %v\n%s", cmds, err, out)
	}
}

// qemuImage makes a QED image with qemu-img create and fills it with
// qemu-io: data, zero clusters (write -z), partial writes.
func qemuImage(t testing.TB, size string, opts string, cmds ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "q.qed")
	args := []string{"create", "-q", "-f", "qed"}
	if opts != "" {
		args = append(args, "-o", opts)
	}
	oracle.MustRun(t, append(args, path, size)...)
	if len(cmds) > 0 {
		qemuIO(t, path, cmds...)
	}
	return path
}

// TestReadQemuImages: what qemu-img and qemu-io write we read as qemu-img
// reads it, map as it maps it, and check as it checks it.
func TestReadQemuImages(t *testing.T) {
	oracle.QemuImg(t)
	tests := []struct {
		name, size, opts string
		cmds             []string
	}{
		{"empty", "1M", "", nil},
		{"1 byte", "1", "", []string{"write -P 0x5a 0 512"}},
		{"511 bytes", "511", "cluster_size=4K", []string{"write -P 0x11 0 512"}},
		{"not a cluster multiple", "100000", "", []string{"write -P 0x22 0 4k", "write -P 0x33 98304 1024"}},
		{"data and zero clusters", "8M", "cluster_size=4K,table_size=2", []string{
			"write -P 0xaa 0 10k", "write -z 1M 128k", "write -P 0x11 3M 4k", "write -z 3M 2k",
			"write -P 0x44 5M 1M", "write -z 5M 64k", "write -P 0x55 7M 3k"}},
		{"across L2 tables", "64M", "cluster_size=4K,table_size=2", []string{
			"write -P 0x66 4092k 8k", "write -P 0x77 60M 300k", "write -z 60M 4k"}},
		{"large tables", "40M", "cluster_size=64K,table_size=16", []string{"write -P 0x12 1M 200k", "write -z 2M 1M"}},
		{"2 TiB sparse", "2T", "", []string{"write -P 0x99 0 64k", "write -P 0x98 1T 100k", "write -z 1536G 1M", "write -P 0x97 2097151M 1M"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := qemuImage(t, tc.size, tc.opts, tc.cmds...)
			if tc.size == "2T" {
				// Compare the regions written and a hole, not 2 TiB.
				im := openFile(t, path)
				rawPath := filepath.Join(t.TempDir(), "q.raw")
				oracle.MustRun(t, "convert", "-f", "qed", "-O", "raw", path, rawPath)
				raw, err := os.Open(rawPath)
				if err != nil {
					t.Fatal(err)
				}
				defer raw.Close()
				for _, off := range []int64{0, 1 << 40, 1536 << 30, 2<<40 - 1<<20, 7 << 30} {
					want, got := make([]byte, 1<<20), make([]byte, 1<<20)
					if _, err := raw.ReadAt(want, off); err != nil {
						t.Fatal(err)
					}
					if _, err := im.ReadAt(got, off); err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, want) {
						t.Fatalf("1 MiB at %d differs from qemu-img's", off)
					}
				}
				assertMapAsQemu(t, path, im)
			} else {
				assertReadsAsQemu(t, path)
			}
			q, code := assertCheckAgrees(t, path)
			if (code != 0 && code != 3) || q.Corruptions != 0 || q.CheckErrors != 0 {
				t.Fatalf("qemu-img check: exit %d, %+v", code, q)
			}
			info := oracle.ImageInfo(t, path)
			im := openFile(t, path)
			got := im.(disk.Describer).Info()
			if got.Format != info.Format || got.VirtualSize != info.VirtualSize || got.ClusterSize != info.ClusterSize || got.Dirty != info.DirtyFlag {
				t.Errorf("Info %+v; qemu-img info %+v", got, info)
			}
		})
	}
}

// An image marked as needing a check is read as it is, as qemu-img reads
// it (read-only, without repairing it); info and check agree with qemu.
func TestNeedCheck(t *testing.T) {
	path := qemuImage(t, "4M", "cluster_size=4K,table_size=2", "write -P 0xaa 0 10k", "write -z 1M 64k")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint64(b[16:], featNeedCheck)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	assertReadsAsQemu(t, path)
	assertCheckAgrees(t, path)
	facts, err := Inspect(bytes.NewReader(b), int64(len(b)), disk.Limits{})
	if err != nil || len(facts.Notes) == 0 || !strings.Contains(facts.Notes[0], "check") {
		t.Fatalf("Inspect = %+v, %v; want a note on the need-check bit", facts, err)
	}
	if q := oracle.ImageInfo(t, path); q.DirtyFlag != facts.Info.Dirty {
		t.Fatalf("dirty: ours %v, qemu-img %v", facts.Info.Dirty, q.DirtyFlag)
	}
	// The input is never written: the bit stays.
	after, _ := os.ReadFile(path)
	if !bytes.Equal(after, b) {
		t.Fatal("reading changed the file")
	}
}

// Malformed images fail cleanly, with an error of disk's classes, where
// qemu-img fails too.
func TestMalformed(t *testing.T) {
	oracle.QemuImg(t)
	base := func(t *testing.T) []byte {
		path := qemuImage(t, "8M", "cluster_size=4K,table_size=2", "write -P 0xaa 0 10k", "write -P 0xbb 5M 4k")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	le := binary.LittleEndian
	const cs = 4096
	l1 := func(b []byte) uint64 { return le.Uint64(b[40:]) }
	tests := []struct {
		name    string
		edit    func([]byte) []byte
		class   error
		atOpen  bool // Open fails (else reading fails)
		message string
	}{
		{"unknown feature", func(b []byte) []byte { le.PutUint64(b[16:], 1<<9); return b }, disk.ErrUnsupported, true, "unknown feature"},
		{"backing file", func(b []byte) []byte {
			le.PutUint64(b[16:], featBacking)
			le.PutUint32(b[56:], 64)
			le.PutUint32(b[60:], 8)
			copy(b[64:], "base.img")
			return b
		}, disk.ErrUnsafe, true, `"base.img"`},
		{"cluster size not a power of two", func(b []byte) []byte { le.PutUint32(b[4:], 12288); return b }, disk.ErrFormat, true, "cluster size"},
		{"table size 32", func(b []byte) []byte { le.PutUint32(b[8:], 32); return b }, disk.ErrFormat, true, "table size"},
		{"image size not a sector multiple", func(b []byte) []byte { le.PutUint64(b[48:], 8<<20+1); return b }, disk.ErrFormat, true, "image size"},
		{"image size beyond the tables", func(b []byte) []byte { le.PutUint64(b[48:], 8<<30); return b }, disk.ErrFormat, true, "image size"},
		{"L1 beyond the file", func(b []byte) []byte { le.PutUint64(b[40:], uint64(len(b))); return b }, disk.ErrFormat, true, "L1 table"},
		{"L1 unaligned", func(b []byte) []byte { le.PutUint64(b[40:], cs+8); return b }, disk.ErrFormat, true, "L1 table"},
		{"truncated", func(b []byte) []byte { return b[:40] }, disk.ErrFormat, true, "header"},
		{"L2 beyond the file", func(b []byte) []byte { le.PutUint64(b[l1(b):], uint64(len(b))); return b }, disk.ErrFormat, false, "L2 table"},
		{"L2 entry unaligned", func(b []byte) []byte {
			l2 := le.Uint64(b[l1(b):])
			le.PutUint64(b[l2:], le.Uint64(b[l2:])+8)
			return b
		}, disk.ErrFormat, false, "data cluster"},
		{"L2 entry neither special nor aligned", func(b []byte) []byte {
			le.PutUint64(b[le.Uint64(b[l1(b):]):], 2)
			return b
		}, disk.ErrFormat, false, "data cluster"},
		{"L2 entry beyond the file", func(b []byte) []byte {
			le.PutUint64(b[le.Uint64(b[l1(b):]):], uint64(len(b)))
			return b
		}, disk.ErrFormat, false, "data cluster"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.edit(base(t))
			path := filepath.Join(t.TempDir(), "bad.qed")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			r := bytes.NewReader(b)
			im, err := Open(r, int64(len(b)), disk.OpenOptions{})
			if !tc.atOpen {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				buf := make([]byte, im.Size())
				_, err = im.ReadAt(buf, 0)
				if _, err2 := im.Extents(0, im.Size()); err2 == nil {
					t.Errorf("Extents accepted the broken table")
				}
			}
			if !errors.Is(err, tc.class) || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("err = %v; want %v saying %q", err, tc.class, tc.message)
			}
			// qemu-img refuses it too.
			if _, _, code := oracle.Run(t, "convert", "-f", "qed", "-O", "raw", path, filepath.Join(t.TempDir(), "x.raw")); code == 0 {
				t.Errorf("qemu-img convert accepted it")
			}
		})
	}
}
