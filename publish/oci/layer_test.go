package oci

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func readLayer(t *testing.T, l *diskLayer) []byte {
	t.Helper()
	data, err := io.ReadAll(l.open())
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// The layer is byte for byte what archive/tar writes for the same two
// entries, so any tar reader reads it, and its size and digest are right.
func TestLayerIsATar(t *testing.T) {
	mtime := time.Unix(1700000000, 0).UTC()
	for _, size := range []int{0, 1, 511, 512, 513, 3*512 + 7} {
		content := bytes.Repeat([]byte{0xa5, 0x5a, 0x00}, size/3+1)[:size]
		l, err := newDiskLayer(Disk{Name: "img.qcow2", Content: bytes.NewReader(content), Size: int64(size)}, mtime, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Digest(); err == nil {
			t.Fatalf("size %d: a digest before the layer was read", size)
		}
		got := readLayer(t, l)

		var want bytes.Buffer
		tw := tar.NewWriter(&want)
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "disk/", Mode: 0o555, Uid: 107, Gid: 107, Uname: "qemu", Gname: "qemu", ModTime: mtime})
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "disk/img.qcow2", Size: int64(size), Mode: 0o440, Uid: 107, Gid: 107, Uname: "qemu", Gname: "qemu", ModTime: mtime})
		tw.Write(content)
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("size %d: the layer differs from archive/tar's (%d vs %d bytes)", size, len(got), want.Len())
		}
		if l.size != int64(len(got)) {
			t.Errorf("size %d: size %d, read %d", size, l.size, len(got))
		}
		sum := sha256.Sum256(got)
		d, err := l.Digest()
		if err != nil || d.Hex != hex.EncodeToString(sum[:]) {
			t.Errorf("size %d: digest %v %v, want sha256:%x", size, d, err, sum)
		}
		if diff := imageConfig(&v1.Platform{OS: "linux", Architecture: "amd64"}, mtime, d).RootFS.DiffIDs[0]; diff != d {
			t.Errorf("size %d: diff ID %v is not the digest %v of an uncompressed layer", size, diff, d)
		}

		tr := tar.NewReader(bytes.NewReader(got))
		dir, err := tr.Next()
		if err != nil || dir.Name != "disk/" || dir.Typeflag != tar.TypeDir || dir.Uid != 107 || dir.Gid != 107 || dir.Mode != 0o555 {
			t.Fatalf("size %d: first entry %+v %v", size, dir, err)
		}
		file, err := tr.Next()
		if err != nil || file.Name != "disk/img.qcow2" || file.Typeflag != tar.TypeReg || file.Uid != 107 || file.Gid != 107 || file.Mode != 0o440 || !file.ModTime.Equal(mtime) {
			t.Fatalf("size %d: second entry %+v %v", size, file, err)
		}
		if data, _ := io.ReadAll(tr); !bytes.Equal(data, content) {
			t.Fatalf("size %d: the disk read back differs", size)
		}
		if _, err := tr.Next(); err != io.EOF {
			t.Fatalf("size %d: after the disk: %v, want the end", size, err)
		}
	}
}

// Nothing but the disk, its name and the time given decides the bytes: two
// layers of the same disk are identical, a re-read gives the same digest.
func TestLayerIsDeterministic(t *testing.T) {
	content := []byte(strings.Repeat("disk ", 1000))
	mk := func(mtime time.Time) *diskLayer {
		l, err := newDiskLayer(Disk{Name: "a.raw", Content: bytes.NewReader(content), Size: int64(len(content))}, mtime, nil)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	epoch := time.Unix(0, 0)
	a, b := mk(epoch), mk(epoch)
	if !bytes.Equal(readLayer(t, a), readLayer(t, b)) {
		t.Fatal("two layers of one disk differ")
	}
	da, _ := a.Digest()
	readLayer(t, a) // an upload that is retried reads it again
	if again, _ := a.Digest(); again != da {
		t.Errorf("digest changed on a second read: %v, then %v", da, again)
	}
	// Sub-second parts of the time are dropped, as ustar keeps seconds.
	c := mk(epoch.Add(300 * time.Millisecond))
	readLayer(t, c)
	if dc, _ := c.Digest(); dc != da {
		t.Errorf("a sub-second time changed the layer")
	}
	d := mk(time.Unix(1, 0))
	readLayer(t, d)
	if dd, _ := d.Digest(); dd == da {
		t.Errorf("another time gave the same layer")
	}
}

// A disk of 8 GiB or more does not fit ustar's size field: archive/tar adds
// a PAX record, and readers take the size from it.
func TestLayerLargeDisk(t *testing.T) {
	const size = 9 << 30
	h, err := layerHeader("big.raw", size, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(h))
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	file, err := tr.Next()
	if err != nil || file.Size != size || file.Name != "disk/big.raw" {
		t.Fatalf("%+v %v", file, err)
	}
	l, err := newDiskLayer(Disk{Name: "big.raw", Content: zeroReaderAt{}, Size: size}, time.Unix(0, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	if l.size != int64(len(h))+size+1024 {
		t.Errorf("size %d, want %d", l.size, int64(len(h))+size+1024)
	}
}

type zeroReaderAt struct{}

func (zeroReaderAt) ReadAt(p []byte, off int64) (int, error) { clear(p); return len(p), nil }

// A disk that shrinks while it is pushed fails the upload; nothing pads it.
func TestLayerDiskShrank(t *testing.T) {
	l, err := newDiskLayer(Disk{Name: "a.raw", Content: bytes.NewReader(make([]byte, 100)), Size: 1000}, time.Unix(0, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(l.open()); !errors.Is(err, ErrDiskChanged) {
		t.Fatalf("read: %v, want ErrDiskChanged", err)
	}
	if _, err := l.Digest(); err == nil {
		t.Error("a digest for a layer that was not read whole")
	}
}

func TestCheckDiskName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"disk.qcow2", true}, {"ubuntu-22.04.raw", true}, {"with space.img", true},
		{"", false}, {".", false}, {"..", false}, {"a/b.qcow2", false}, {`a\b`, false},
		{"tab\there", false}, {strings.Repeat("x", 256), false},
	} {
		if err := CheckDiskName(tc.name); (err == nil) != tc.ok {
			t.Errorf("CheckDiskName(%q) = %v", tc.name, err)
		}
	}
}

func TestParseReference(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"oci://127.0.0.1:5000/vm/ubuntu:22.04", "127.0.0.1:5000/vm/ubuntu:22.04", true},
		{"OCI://127.0.0.1:5000/vm/ubuntu", "127.0.0.1:5000/vm/ubuntu:latest", true},
		{"quay.io/containerdisks/fedora@sha256:" + strings.Repeat("ab", 32), "quay.io/containerdisks/fedora@sha256:" + strings.Repeat("ab", 32), true},
		{"oci://", "", false},
		{"oci://reg/UPPER:1", "", false},
		{"reg/x@sha256:abc", "", false},
		{"reg/x:bad tag", "", false},
	} {
		ref, err := ParseReference(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseReference(%q): %v", tc.in, err)
			continue
		}
		if err == nil && ref.Name() != tc.want {
			t.Errorf("ParseReference(%q) = %s, want %s", tc.in, ref.Name(), tc.want)
		}
	}
}
