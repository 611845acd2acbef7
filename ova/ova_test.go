package ova

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
)

// ovf is a descriptor in VMware's style naming files (id, href,
// attributes) and the disks that use them (diskId, fileRef).
func ovf(files [][3]string, disks [][2]string) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References>
`)
	for _, f := range files {
		fmt.Fprintf(&b, "    <File ovf:id=%q ovf:href=%q %s/>\n", f[0], f[1], f[2])
	}
	b.WriteString("  </References>\n  <DiskSection>\n    <Info>Virtual disk information</Info>\n")
	for _, d := range disks {
		fmt.Fprintf(&b, "    <Disk ovf:capacity=\"1\" ovf:capacityAllocationUnits=\"byte * 2^20\" ovf:diskId=%q ovf:fileRef=%q ovf:format=\"http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized\"/>\n", d[0], d[1])
	}
	b.WriteString("  </DiskSection>\n</Envelope>\n")
	return b.String()
}

// tarOf makes a tar of the named members, in order.
func tarOf(t testing.TB, members ...[2]string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	for _, m := range members {
		if err := w.WriteHeader(&tar.Header{Name: m[0], Mode: 0o644, Size: int64(len(m[1])), Format: tar.FormatUSTAR}); err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(m[1]))
	}
	w.Close()
	return b.Bytes()
}

func TestRead(t *testing.T) {
	desc := ovf([][3]string{{"file1", "disk1.vmdk", ""}, {"file2", "disk2.vmdk", `ovf:size="5"`}},
		[][2]string{{"vmdisk1", "file1"}, {"vmdisk2", "file2"}})
	b := tarOf(t, [2]string{"app.ovf", desc}, [2]string{"app.mf", "SHA256(disk1.vmdk)= 00\n"},
		[2]string{"disk1.vmdk", "first disk"}, [2]string{"disk2.vmdk", "disk2"})
	r := bytes.NewReader(b)
	if !Is(r, int64(len(b))) {
		t.Fatal("not taken for an OVA")
	}
	a, err := Read(r, int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	for n, want := range map[int]string{0: "first disk", 1: "first disk", 2: "disk2"} {
		d, err := a.Pick(n)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(b[d.Offset : d.Offset+d.Size]); got != want {
			t.Errorf("disk %d reads %q, want %q", n, got, want)
		}
	}
	if _, err := a.Pick(3); err == nil || !strings.Contains(err.Error(), `there is no disk 3; the OVF lists 2: 1 "disk1.vmdk", 2 "disk2.vmdk"`) {
		t.Errorf("Pick(3): %v", err)
	}
}

func TestHostile(t *testing.T) {
	good := ovf([][3]string{{"f", "d.vmdk", ""}}, [][2]string{{"d", "f"}})
	truncated := tarOf(t, [2]string{"a.ovf", good}, [2]string{"d.vmdk", strings.Repeat("x", 5000)})
	truncated = truncated[:2048]
	tests := []struct {
		name  string
		b     []byte
		class error
		says  string
	}{
		{"no ovf", tarOf(t, [2]string{"a.ovf.txt", "x"}), disk.ErrFormat, "no OVF descriptor"},
		{"two ovfs", tarOf(t, [2]string{"a.ovf", good}, [2]string{"b.ovf", good}), disk.ErrFormat, "2 OVF descriptors"},
		{"not xml", tarOf(t, [2]string{"a.ovf", "<Envelope><References>"}), disk.ErrFormat, "not valid XML"},
		{"no disk", tarOf(t, [2]string{"a.ovf", ovf(nil, nil)}), disk.ErrFormat, "lists no disk"},
		{"unknown file", tarOf(t, [2]string{"a.ovf", ovf(nil, [][2]string{{"d", "f"}})}), disk.ErrFormat, "do not list"},
		{"member past the end", truncated, disk.ErrFormat, "past the end"},
		{"disk not in the tar", tarOf(t, [2]string{"a.ovf", good}), disk.ErrFormat, "not in the tar"},
		{"compressed", tarOf(t, [2]string{"a.ovf", ovf([][3]string{{"f", "d.vmdk", `ovf:compression="gzip"`}}, [][2]string{{"d", "f"}})}, [2]string{"d.vmdk", "x"}), disk.ErrUnsupported, "compressed"},
		{"chunked", tarOf(t, [2]string{"a.ovf", ovf([][3]string{{"f", "d.vmdk", `ovf:chunkSize="1024"`}}, [][2]string{{"d", "f"}})}, [2]string{"d.vmdk", "x"}), disk.ErrUnsupported, "chunks"},
		{"path names are only names", tarOf(t, [2]string{"a.ovf", ovf([][3]string{{"f", "/etc/passwd", ""}}, [][2]string{{"d", "f"}})}), disk.ErrFormat, "not in the tar"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := Read(bytes.NewReader(tt.b), int64(len(tt.b)))
			if err == nil {
				_, err = a.Pick(1)
			}
			if !errors.Is(err, tt.class) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("got %v; want %v saying %q", err, tt.class, tt.says)
			}
		})
	}
}

// FuzzRead reads arbitrary bytes as an OVA: errors are classified, and a
// disk picked lies inside the file.
func FuzzRead(f *testing.F) {
	desc := ovf([][3]string{{"file1", "disk1.vmdk", ""}}, [][2]string{{"vmdisk1", "file1"}})
	f.Add(tarOf(f, [2]string{"app.ovf", desc}, [2]string{"disk1.vmdk", "KDMV disk"}))
	f.Add(tarOf(f, [2]string{"app.ovf", ovf([][3]string{{"f", "d", `ovf:compression="gzip"`}}, [][2]string{{"d", "f"}, {"e", "g"}})}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		Is(r, int64(len(b)))
		a, err := Read(r, int64(len(b)))
		if err != nil {
			if !errors.Is(err, disk.ErrFormat) && !errors.Is(err, disk.ErrUnsupported) && !errors.Is(err, disk.ErrLimit) {
				t.Fatalf("error of no class: %v", err)
			}
			return
		}
		for n := range len(a.Disks) + 1 {
			d, err := a.Pick(n)
			if err != nil {
				continue
			}
			if d.Offset < 0 || d.Size < 0 || d.Offset+d.Size > int64(len(b)) {
				t.Fatalf("disk %d at %d, %d bytes, outside %d bytes", n, d.Offset, d.Size, len(b))
			}
		}
	})
}
