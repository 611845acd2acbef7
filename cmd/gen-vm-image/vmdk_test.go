package main

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// TestVMDKAndOVA: -of vmdk with -o and -c, an OVA as the input of single
// (--input-disk) and convert, and info on what we wrote, as qemu-img
// prints it.
func TestVMDKAndOVA(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	raw := filepath.Join(dir, "in.raw")
	if err := os.WriteFile(raw, bytes.Repeat([]byte("an appliance disk "), 200_000), 0o644); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "disk1.vmdk")
	oracle.MustRun(t, "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, disk)
	data, _ := os.ReadFile(disk)
	desc := `<?xml version="1.0"?><Envelope xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"><References><File ovf:id="f1" ovf:href="disk1.vmdk"/></References><DiskSection><Disk ovf:diskId="d1" ovf:fileRef="f1"/></DiskSection></Envelope>`
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	for _, m := range []struct {
		name string
		data []byte
	}{{"a.ovf", []byte(desc)}, {"disk1.vmdk", data}} {
		w.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data))})
		w.Write(m.data)
	}
	w.Close()
	ova := filepath.Join(dir, "a.ova")
	os.WriteFile(ova, b.Bytes(), 0o644)

	// single -i OVA -of vmdk streamOptimized, adapter lsilogic.
	r := gvi(t, dir, "single", "x", "8M", "-i", ova, "--input-disk", "1", "-of", "vmdk", "-o", "subformat=streamOptimized,adapter_type=lsilogic,hwversion=11", "-od", "out")
	if r.code != 0 {
		t.Fatalf("single: exit %d\n%s", r.code, r.stderr)
	}
	out := filepath.Join(dir, "out", "x.vmdk")
	if info := oracle.MustRun(t, "info", out); !strings.Contains(info, "create type: streamOptimized") || !strings.Contains(info, "virtual size: 8 MiB") {
		t.Fatalf("qemu-img info:\n%s", info)
	}
	oracle.MustRun(t, "compare", "-f", "vmdk", "-F", "raw", out, raw) // compare stops at the shorter; the rest is zeros
	// info prints what qemu-img info prints, but for the disk size.
	ours := gvi(t, dir, "info", out).stdout
	theirs := oracle.MustRun(t, "info", out)
	if strip(ours) != strip(theirs) {
		t.Errorf("info:\n%s\nqemu-img info:\n%s", ours, theirs)
	}
	// convert an OVA with -c: a streamOptimized vmdk.
	r = gvi(t, dir, "convert", "-c", ova, "c.vmdk")
	if r.code != 0 {
		t.Fatalf("convert: exit %d\n%s", r.code, r.stderr)
	}
	oracle.MustRun(t, "compare", "-f", "vmdk", "-F", "raw", filepath.Join(dir, "c.vmdk"), raw)

	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"single", "x", "8M", "-i", ova, "--input-disk", "0"}, "must be a positive whole number"},
		{[]string{"single", "x", "8M", "--input-disk", "1"}, "there is no input"},
		{[]string{"single", "x", "8M", "-i", ova, "--input-disc", "1"}, "did you mean --input-disk?"},
		{[]string{"single", "x", "8M", "-i", ova, "--input-disk", "2", "-od", "o2"}, "there is no disk 2"},
		{[]string{"single", "x", "8M", "-of", "vmdk", "-o", "subformat=monolithicFlat", "-od", "o3"}, "subformat takes monolithicSparse, streamOptimized"},
		{[]string{"single", "x", "8M", "-of", "vmdk", "-o", "adapter_type=scsi", "-od", "o3"}, "adapter_type takes ide, lsilogic, buslogic, legacyESX"},
		{[]string{"single", "x", "8M", "-of", "vmdk", "-o", "subformat=monolithicSparse", "-c", "-od", "o3"}, "use subformat=streamOptimized"},
	} {
		r := gvi(t, dir, tc.args...)
		if r.code == 0 || !strings.Contains(r.stdout+r.stderr, tc.says) {
			t.Errorf("%v: exit %d, want %q in\n%s%s", tc.args, r.code, tc.says, r.stdout, r.stderr)
		}
	}
}

// strip drops the disk size line, which depends on the file system.
func strip(info string) string {
	var keep []string
	for _, l := range strings.Split(info, "\n") {
		if !strings.HasPrefix(l, "disk size:") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}
