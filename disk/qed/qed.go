// Package qed knows qemu's QED format (docs/interop/qed_spec.txt): it
// recognises and inspects QED images. It cannot read or write them yet.
package qed

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

func init() {
	disk.Register(disk.Format{Name: "qed", Sniff: Sniff, Inspect: Inspect, Extensions: []string{".qed"}})
}

// Sniff recognises the magic "QED\0".
func Sniff(r io.ReaderAt, _ int64) bool {
	return bytes.Equal(blockio.Peek(r, 0, 4), []byte("QED\x00"))
}

// Feature bits (qed_spec.txt "Header").
const (
	featBacking     = 1 << 0
	featNeedCheck   = 1 << 1
	featBackingNoFm = 1 << 2
	featKnown       = featBacking | featNeedCheck | featBackingNoFm
)

// Inspect reads the little-endian header and refuses unknown features, a
// backing file, absurd sizes and a geometry qed_spec.txt does not allow.
func Inspect(r io.ReaderAt, size int64, limits disk.Limits) (disk.Facts, error) {
	facts, err := inspect(blockio.Source{R: r, Size: size}, limits)
	if err != nil {
		return facts, fmt.Errorf("qed: %w", err)
	}
	return facts, nil
}

func inspect(src blockio.Source, limits disk.Limits) (disk.Facts, error) {
	b, err := src.Read("QED header", 0, 64)
	if err != nil {
		return disk.Facts{}, err
	}
	le := binary.LittleEndian
	clusterSize, tableSize := le.Uint32(b[4:]), le.Uint32(b[8:])
	features := le.Uint64(b[16:])
	virtualSize := le.Uint64(b[48:])
	nameOffset, nameSize := le.Uint32(b[56:]), le.Uint32(b[60:])
	if unknown := features &^ featKnown; unknown != 0 {
		return disk.Facts{}, fmt.Errorf("%w: unknown feature bits %#x are set", disk.ErrUnsupported, unknown)
	}
	if features&featBacking != 0 {
		name := fmt.Sprintf("(%d bytes at offset %#x)", nameSize, nameOffset)
		if nameSize <= 1023 {
			if nb, err := src.Read("QED backing file name", int64(nameOffset), int64(nameSize)); err == nil {
				name = disk.Quote(string(nb))
			}
		}
		return disk.Facts{}, fmt.Errorf("%w: the image is an overlay on the backing file %s: an image must not make us open other files", disk.ErrUnsafe, name)
	}
	if err := limits.CheckVirtualSize("the QED header", virtualSize); err != nil {
		return disk.Facts{}, err
	}
	facts := disk.Facts{Info: disk.Info{Format: "qed", VirtualSize: int64(virtualSize), ClusterSize: int64(clusterSize)}}
	// qed_spec.txt: cluster size a power of two from 4 KiB to 64 MiB, table
	// size 1 to 16 clusters.
	if clusterSize < 4<<10 || clusterSize > 64<<20 || clusterSize&(clusterSize-1) != 0 || tableSize < 1 || tableSize > 16 || tableSize&(tableSize-1) != 0 {
		return facts, fmt.Errorf("%w: cluster size %d and table size %d out of range", disk.ErrFormat, clusterSize, tableSize)
	}
	return facts, nil
}
