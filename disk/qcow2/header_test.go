package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
)

// headerWithExtensions is a version 3 header in a 64 KiB cluster followed by
// the given extensions, then a backing file name when backing is set.
func headerWithExtensions(exts []Extension, backing string) []byte {
	h := &Header{ClusterBits: 16, Size: 1 << 20, L1Size: 1, L1TableOffset: 0x30000,
		RefcountTableOffset: 0x10000, RefcountTableClusters: 1, RefcountOrder: 4}
	b := h.Marshal()
	b = b[:headerV3WithCompression] // drop the end-of-extensions marker
	be := binary.BigEndian
	for _, e := range exts {
		b = be.AppendUint32(b, e.Type)
		b = be.AppendUint32(b, uint32(len(e.Data)))
		b = append(b, e.Data...)
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
	}
	b = append(b, make([]byte, 8)...)
	if backing != "" {
		be.PutUint64(b[8:], uint64(len(b)))
		be.PutUint32(b[16:], uint32(len(backing)))
		b = append(b, backing...)
	}
	return append(b, make([]byte, 0x40000-len(b))...)
}

func TestParseHeaderExtensions(t *testing.T) {
	exts := []Extension{
		{extBackingFormat, []byte("raw")},
		{0x12345678, []byte("unknown, kept")},
		{extDataFileName, []byte("data.img")},
		{extFullDiskEncryption, make([]byte, 16)},
		{extBitmaps, make([]byte, 24)},
	}
	h, err := ParseHeader(headerWithExtensions(exts, "base.qcow2"), 0x40000)
	if err != nil {
		t.Fatal(err)
	}
	if h.BackingFormat != "raw" || h.DataFile != "data.img" || !h.HasFDEExtension || !h.HasBitmaps || h.BackingFile != "base.qcow2" {
		t.Fatalf("header %+v", h)
	}
	if len(h.Extensions) != len(exts) {
		t.Fatalf("%d extensions, want %d", len(h.Extensions), len(exts))
	}
	for i, e := range exts {
		if got := h.Extensions[i]; got.Type != e.Type || !bytes.Equal(got.Data, e.Data) {
			t.Errorf("extension %d = %#x %q, want %#x %q", i, got.Type, got.Data, e.Type, e.Data)
		}
	}
	if d := h.Extension(0x12345678); string(d) != "unknown, kept" {
		t.Errorf("Extension(0x12345678) = %q", d)
	}
	if d := h.Extension(0xdeadbeef); d != nil {
		t.Errorf("Extension of a missing type = %q", d)
	}

	// An extension whose length runs past the header cluster is malformed.
	b := headerWithExtensions([]Extension{{extBackingFormat, []byte("raw")}}, "")
	binary.BigEndian.PutUint32(b[headerV3WithCompression+4:], 1<<20)
	if _, err := ParseHeader(b, int64(len(b))); !errors.Is(err, disk.ErrFormat) {
		t.Fatalf("an overrunning extension: %v", err)
	}
}
