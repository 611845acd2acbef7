// Package qcow knows version 1 of qemu's copy-on-write format, as qemu's
// block/qcow.c reads it: it recognises and inspects such images. It
// cannot read or write them yet. (Versions 2 and 3 are disk/qcow2.)
package qcow

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

func init() {
	disk.Register(disk.Format{Name: "qcow", Sniff: Sniff, Inspect: Inspect, Extensions: []string{".qcow"}})
}

// magic is "QFI\xfb", shared with qcow2; the version that follows tells
// them apart.
const magic = 0x514649fb

// Sniff recognises the magic followed by version 1.
func Sniff(r io.ReaderAt, _ int64) bool {
	b := blockio.Peek(r, 0, 8)
	return len(b) == 8 && binary.BigEndian.Uint32(b) == magic && binary.BigEndian.Uint32(b[4:]) == 1
}

// Inspect reads the big-endian header and refuses a backing file,
// encryption, absurd sizes and the geometry qemu refuses.
func Inspect(r io.ReaderAt, size int64, limits disk.Limits) (disk.Facts, error) {
	facts, err := inspect(blockio.Source{R: r, Size: size}, limits)
	if err != nil {
		return facts, fmt.Errorf("qcow: %w", err)
	}
	return facts, nil
}

func inspect(src blockio.Source, limits disk.Limits) (disk.Facts, error) {
	b, err := src.Read("qcow header", 0, 48)
	if err != nil {
		return disk.Facts{}, err
	}
	be := binary.BigEndian
	backingOffset, backingSize := be.Uint64(b[8:]), be.Uint32(b[16:])
	virtualSize := be.Uint64(b[24:])
	clusterBits, l2Bits := b[32], b[33]
	crypt := be.Uint32(b[36:])
	if backingOffset != 0 {
		name := fmt.Sprintf("(%d bytes at offset %#x)", backingSize, backingOffset)
		if backingSize <= 1023 && backingOffset <= uint64(src.Size) {
			if nb, err := src.Read("qcow backing file name", int64(backingOffset), int64(backingSize)); err == nil {
				name = disk.Quote(string(nb))
			}
		}
		return disk.Facts{}, fmt.Errorf("%w: the image is an overlay on the backing file %s: an image must not make us open other files", disk.ErrUnsafe, name)
	}
	if crypt != 0 {
		return disk.Facts{}, fmt.Errorf("%w: the image is encrypted (method %d); encrypted images cannot be read", disk.ErrUnsupported, crypt)
	}
	if err := limits.CheckVirtualSize("the qcow header", virtualSize); err != nil {
		return disk.Facts{}, err
	}
	// qemu's bounds (block/qcow.c qcow_open).
	if clusterBits < 9 || clusterBits > 16 || l2Bits < 9-3 || l2Bits > 16-3 {
		return disk.Facts{}, fmt.Errorf("%w: cluster_bits %d and l2_bits %d out of range", disk.ErrFormat, clusterBits, l2Bits)
	}
	facts := disk.Facts{Info: disk.Info{Format: "qcow", VirtualSize: int64(virtualSize), ClusterSize: int64(1) << clusterBits}}
	perL1 := uint64(1) << (clusterBits + l2Bits)
	if err := limits.CheckTable("the L1 table", (virtualSize+perL1-1)/perL1, 8); err != nil {
		return facts, err
	}
	return facts, nil
}
