package genvm

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// makeOVA writes an OVA in dir: an OVF naming the given disk files, in
// order, then the files, as VMware's ovftool lays one out.
func makeOVA(t *testing.T, dir string, disks ...string) string {
	t.Helper()
	var refs, section strings.Builder
	for i, d := range disks {
		fmt.Fprintf(&refs, "    <File ovf:href=%q ovf:id=\"file%d\"/>\n", filepath.Base(d), i+1)
		fmt.Fprintf(&section, "    <Disk ovf:capacity=\"4\" ovf:capacityAllocationUnits=\"byte * 2^20\" ovf:diskId=\"vmdisk%d\" ovf:fileRef=\"file%d\" ovf:format=\"http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized\"/>\n", i+1, i+1)
	}
	desc := "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\" xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/1\">\n  <References>\n" +
		refs.String() + "  </References>\n  <DiskSection>\n    <Info>Virtual disk information</Info>\n" + section.String() + "  </DiskSection>\n</Envelope>\n"
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	add := func(name string, data []byte) {
		if err := w.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Format: tar.FormatUSTAR}); err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	add("appliance.ovf", []byte(desc))
	for _, d := range disks {
		data, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		add(filepath.Base(d), data)
	}
	w.Close()
	p := filepath.Join(dir, "appliance.ova")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestOVAInput: an OVA converts to the same bytes as its disk (the first
// the OVF lists, or the one input.disk picks), read in place.
func TestOVAInput(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	var raws, vmdks []string
	for i, sub := range []string{"streamOptimized", "monolithicSparse"} {
		raw := filepath.Join(dir, fmt.Sprintf("disk%d.raw", i+1))
		data := bytes.Repeat([]byte(fmt.Sprintf("disk %d of the appliance ", i+1)), 150_000)[:3<<20+512*(i+1)]
		if err := os.WriteFile(raw, data, 0o644); err != nil {
			t.Fatal(err)
		}
		vmdk := filepath.Join(dir, fmt.Sprintf("disk%d.vmdk", i+1))
		oracle.MustRun(t, "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat="+sub, raw, vmdk)
		raws, vmdks = append(raws, raw), append(vmdks, vmdk)
	}
	ova := makeOVA(t, dir, vmdks...)
	before, _ := os.ReadDir(dir)
	for _, tc := range []struct {
		disk int
		want string
	}{{0, raws[0]}, {1, raws[0]}, {2, raws[1]}} {
		out := t.TempDir()
		st, _ := os.Stat(tc.want)
		res, err := Generate(context.Background(), Spec{Name: "x", Size: fmt.Sprint(st.Size()), Format: "raw", OutputDirectory: out,
			Input: &Input{Path: ova, Disk: tc.disk}})
		if err != nil {
			t.Fatalf("disk %d: %v", tc.disk, err)
		}
		got, _ := os.ReadFile(res.Path)
		want, _ := os.ReadFile(tc.want)
		if !bytes.Equal(got, want) {
			t.Fatalf("disk %d: the output differs from the disk", tc.disk)
		}
	}
	// convert reads the first disk the same way.
	out := filepath.Join(t.TempDir(), "x.qcow2")
	if _, err := Convert(context.Background(), ConvertSpec{Input: ova, Output: out}); err != nil {
		t.Fatal(err)
	}
	oracle.AssertSame(t, out, "qcow2", raws[0], "raw")
	// Nothing was extracted next to the OVA.
	if after, _ := os.ReadDir(dir); len(after) != len(before) {
		t.Errorf("files appeared beside the OVA: %v", after)
	}

	// A disk the OVF does not list, and a disk of something that is not an
	// OVA, are invalid attributes.
	for _, tc := range []struct {
		in   *Input
		code int
		says string
	}{
		{&Input{Path: ova, Disk: 3}, CodeInvalidAttribute, "there is no disk 3; the OVF lists 2"},
		{&Input{Path: vmdks[0], Disk: 1}, CodeInvalidAttribute, "not one"},
	} {
		_, err := Generate(context.Background(), Spec{Name: "x", Size: "8M", Format: "raw", OutputDirectory: t.TempDir(), Input: tc.in})
		if CodeOf(err) != tc.code || !strings.Contains(fmt.Sprint(err), tc.says) {
			t.Errorf("%+v: code %d %v; want %d saying %q", tc.in, CodeOf(err), err, tc.code, tc.says)
		}
	}
}
