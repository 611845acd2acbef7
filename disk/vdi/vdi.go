// Package vdi reads and writes VirtualBox's VDI format (VBoxHDD "VDI"
// version 1.1), as qemu's block/vdi.c and VirtualBox read it: dynamic and
// static images of 1 MiB blocks whose block map says where each block
// lies, or that it reads as zeros (unallocated 0xffffffff, discarded
// 0xfffffffe). Undo and differencing images are refused: they need their
// parent, and an image never makes us open another file.
package vdi

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

func init() {
	disk.Register(disk.Format{
		Name:       "vdi",
		Sniff:      Sniff,
		Inspect:    Inspect,
		Open:       Open,
		Create:     Create,
		BlockSize:  BlockSize,
		Check:      Check,
		Options:    CreateOptions,
		Extensions: []string{".vdi"},
	})
}

// CreateOptions are the -o options Create takes, as qemu-img spells them.
var CreateOptions = []disk.Option{
	{Name: "static", Help: "preallocate every block (a fixed-size image, sparse in the file)", Values: []string{"on", "off"}, Default: "off"},
}

// Sniff recognises the image signature.
func Sniff(r io.ReaderAt, _ int64) bool {
	b := blockio.Peek(r, 0x40, 4)
	return len(b) == 4 && binary.LittleEndian.Uint32(b) == signature
}

// BlockSize is the unit a dynamic image allocates (a 1 MiB block); a
// static one is preallocated and sparse, so zeros are left out of it by
// file system block, as in a raw file.
func BlockSize(opt disk.CreateOptions) int64 {
	if opt.Options["static"] == "on" {
		return 4096
	}
	return blockSize
}

// Inspect reads the header and refuses what Open refuses: undo and
// differencing images (they need their parent), versions and geometries
// qemu does not read, absurd sizes and a block map that does not cover the
// disk or lies beyond the file.
func Inspect(r io.ReaderAt, size int64, limits disk.Limits) (disk.Facts, error) {
	h, err := readHeader(blockio.Source{R: r, Size: size}, limits)
	if err != nil {
		return disk.Facts{Info: h.info()}, fmt.Errorf("vdi: %w", err)
	}
	facts := disk.Facts{Info: h.info()}
	if h.imageType == typeStatic {
		facts.Notes = append(facts.Notes, "a static (preallocated) VDI image")
	}
	return facts, nil
}
