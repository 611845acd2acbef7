// Package vdi knows VirtualBox's VDI format, as qemu's block/vdi.c reads
// it: it recognises and inspects VDI images. It cannot read or write them
// yet.
package vdi

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

func init() {
	disk.Register(disk.Format{Name: "vdi", Sniff: Sniff, Inspect: Inspect, Extensions: []string{".vdi"}})
}

// signature is the image signature at offset 0x40, little-endian.
const signature = 0xbeda107f

// Sniff recognises the image signature.
func Sniff(r io.ReaderAt, _ int64) bool {
	b := blockio.Peek(r, 0x40, 4)
	return len(b) == 4 && binary.LittleEndian.Uint32(b) == signature
}

// Inspect reads the header and refuses undo and differencing images (they
// need their parent), image types that do not exist, absurd sizes and a
// block map that does not cover the disk.
func Inspect(r io.ReaderAt, size int64, limits disk.Limits) (disk.Facts, error) {
	facts, err := inspect(blockio.Source{R: r, Size: size}, limits)
	if err != nil {
		return facts, fmt.Errorf("vdi: %w", err)
	}
	return facts, nil
}

func inspect(src blockio.Source, limits disk.Limits) (disk.Facts, error) {
	b, err := src.Read("VDI header", 0, 0x1c8)
	if err != nil {
		return disk.Facts{}, err
	}
	le := binary.LittleEndian
	imageType := le.Uint32(b[0x4c:])
	virtualSize := le.Uint64(b[0x170:])
	blockSize := le.Uint32(b[0x178:])
	blocks := le.Uint32(b[0x180:])
	switch imageType {
	case 1, 2: // dynamic, static
	case 3, 4:
		return disk.Facts{}, fmt.Errorf("%w: an undo or differencing image (type %d) over a parent: it needs its parent, and an image must not make us open other files", disk.ErrUnsafe, imageType)
	default:
		return disk.Facts{}, fmt.Errorf("%w: image type %d (1 dynamic and 2 static are readable)", disk.ErrUnsupported, imageType)
	}
	if err := limits.CheckVirtualSize("the VDI header", virtualSize); err != nil {
		return disk.Facts{}, err
	}
	facts := disk.Facts{Info: disk.Info{Format: "vdi", VirtualSize: int64(virtualSize), ClusterSize: int64(blockSize)}}
	if blockSize == 0 || blockSize&(blockSize-1) != 0 || blockSize > 256<<20 {
		return facts, fmt.Errorf("%w: block size %d", disk.ErrFormat, blockSize)
	}
	if err := limits.CheckTable("the block map", uint64(blocks), 4); err != nil {
		return facts, err
	}
	if uint64(blocks)*uint64(blockSize) < virtualSize {
		return facts, fmt.Errorf("%w: %d blocks of %d bytes cover less than the virtual size of %d bytes", disk.ErrFormat, blocks, blockSize, virtualSize)
	}
	return facts, nil
}
