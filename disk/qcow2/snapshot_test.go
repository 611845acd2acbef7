package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
)

// snapshotTable builds a file with a snapshot table at 0x10000 whose entries
// have the given extra data, id and name sizes.
func snapshotTable(sizes [][3]int) ([]byte, *Header) {
	const at = 0x10000
	b := make([]byte, at)
	be := binary.BigEndian
	for i, s := range sizes {
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
		e := make([]byte, snapshotHeaderSize+s[0]+s[1]+s[2])
		be.PutUint64(e[0:], uint64(0x100000*(i+1))) // L1 offset
		be.PutUint32(e[8:], uint32(i+1))            // L1 size
		be.PutUint16(e[12:], uint16(s[1]))
		be.PutUint16(e[14:], uint16(s[2]))
		be.PutUint32(e[36:], uint32(s[0]))
		b = append(b, e...)
	}
	return b, &Header{ClusterBits: 16, NbSnapshots: uint32(len(sizes)), SnapshotsOffset: at}
}

func TestSnapshotEntries(t *testing.T) {
	b, h := snapshotTable([][3]int{{16, 1, 5}, {16, 2, 0}, {0, 0, 0}})
	want := []snapshotEntry{
		{index: 0, offset: 0x10000, length: 62, l1Offset: 0x100000, l1Size: 1, extraSize: 16},
		{index: 1, offset: 0x10040, length: 58, l1Offset: 0x200000, l1Size: 2, extraSize: 16},
		{index: 2, offset: 0x10080, length: 40, l1Offset: 0x300000, l1Size: 3},
	}
	var got []snapshotEntry
	for e, err := range snapshotEntries(bytes.NewReader(b), int64(len(b)), h) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if err := checkSnapshotTable(bytes.NewReader(b), int64(len(b)), h); err != nil {
		t.Fatalf("a table inside the file: %v", err)
	}

	// The last entry's name runs past the end of the file: the reader
	// refuses it; the walk itself reads zeros there, as the checker wants.
	cut := b[:len(b)-10]
	if err := checkSnapshotTable(bytes.NewReader(cut), int64(len(cut)), h); !errors.Is(err, disk.ErrFormat) ||
		!strings.Contains(err.Error(), "snapshot 2 of 3 at host offset 0x10080 (40 bytes) runs past the end") {
		t.Fatalf("a truncated table: %v", err)
	}
	n := 0
	for _, err := range snapshotEntries(bytes.NewReader(cut), int64(len(cut)), h) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 3 {
		t.Fatalf("the walk stopped after %d entries", n)
	}
}

func TestSnapshotTablePlace(t *testing.T) {
	tests := []struct {
		name string
		h    Header
		size int64
		says string
	}{
		{"none", Header{ClusterBits: 16}, 0x20000, ""},
		{"fits", Header{ClusterBits: 16, NbSnapshots: 2, SnapshotsOffset: 0x10000}, 0x10000 + 80, ""},
		{"overlaps the header", Header{ClusterBits: 16, NbSnapshots: 1, SnapshotsOffset: 0x200}, 0x20000, "overlaps the header"},
		{"fixed parts past the end", Header{ClusterBits: 16, NbSnapshots: 3, SnapshotsOffset: 0x10000}, 0x10000 + 80, "runs past the end"},
		{"offset past the end", Header{ClusterBits: 16, NbSnapshots: 1, SnapshotsOffset: 1 << 60}, 0x20000, "runs past the end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.h.checkSnapshotTablePlace(tt.size)
			if tt.says == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, disk.ErrFormat) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("err = %v, want ErrFormat saying %q", err, tt.says)
			}
		})
	}
}

// The reader and the checker decode compressed descriptors alike.
func TestCompressedDescriptor(t *testing.T) {
	tests := []struct {
		clusterBits  uint32
		entry        uint64
		host, length uint64
	}{
		// 64 KiB clusters: x = 54, offset in bits 0-53, sectors in 54-61.
		{16, EntryCompressed | 0x12345, 0x12345, 512 - 0x145},
		{16, EntryCompressed | 3<<54 | 0x200, 0x200, 4 * 512},
		{16, EntryCompressed | EntryCopied | 0xff<<54 | 0x3ffffffffffe00, 0x3ffffffffffe00, 256 * 512},
		// 512-byte clusters: x = 61, one bit of sectors.
		{9, EntryCompressed | 1<<61 | 0x1000, 0x1000, 1024},
		// 2 MiB clusters: x = 49.
		{21, 0x1fff<<49 | 0x10, 0x10, 0x2000*512 - 0x10},
	}
	for _, tt := range tests {
		host, length := newCompressedDescriptor(tt.clusterBits).decode(tt.entry)
		if host != tt.host || length != tt.length {
			t.Errorf("cluster_bits %d, entry %#x: host %#x length %d; want %#x, %d", tt.clusterBits, tt.entry, host, length, tt.host, tt.length)
		}
	}
}
