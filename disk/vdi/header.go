package vdi

import (
	"encoding/binary"
	"fmt"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// The VDI header (VirtualBox VDICore.h, VDIHEADER1PLUS; qemu block/vdi.c
// VdiHeader): a 0x40-byte text, then little-endian fields.
const (
	signature   = 0xbeda107f
	version11   = 0x00010001
	headerBytes = 0x200 // what we read and write: the header, padded to a sector
	headerSize  = 0x180 // the header_size field of a 1.1 header (from 0x48 on)
	sectorSize  = 512
	blockSize   = 1 << 20 // the only block size qemu reads and VirtualBox writes

	typeDynamic = 1
	typeStatic  = 2

	// Block map entries that are not block indexes. Both read as zeros.
	unallocated = 0xffffffff
	discarded   = 0xfffffffe

	// maxBlocks is qemu's VDI_BLOCKS_IN_IMAGE_MAX (a map of at most 4 GiB).
	maxBlocks = 0x3fffffff

	// dataAlign is where VirtualBox starts the data blocks (VDI_DATA_ALIGN):
	// blocks aligned to 1 MiB in the file.
	dataAlign = 1 << 20
)

// Field offsets in the header.
const (
	offSignature   = 0x40
	offVersion     = 0x44
	offHeaderSize  = 0x48
	offImageType   = 0x4c
	offImageFlags  = 0x50
	offBmap        = 0x154
	offData        = 0x158
	offSectorSize  = 0x168
	offDiskSize    = 0x170
	offBlockSize   = 0x178
	offBlockExtra  = 0x17c
	offBlocks      = 0x180
	offAllocated   = 0x184
	offUUIDCreate  = 0x188
	offUUIDModify  = 0x198
	offUUIDLinkage = 0x1a8
	offUUIDParent  = 0x1b8
)

// header is what we use of a VDI header.
type header struct {
	imageType  uint32
	offsetBmap uint32
	offsetData uint32
	diskSize   uint64 // rounded up to a sector, as qemu reads it
	blockSize  uint32
	blockExtra uint32
	blocks     uint32 // entries of the block map
	allocated  uint32 // blocks stored in the file, as the header counts them
}

func (h header) info() disk.Info {
	if h.blockSize == 0 && h.diskSize == 0 {
		return disk.Info{}
	}
	return disk.Info{Format: "vdi", VirtualSize: int64(h.diskSize), ClusterSize: int64(h.blockSize)}
}

// readHeader reads and validates the header as qemu's vdi_open does, and
// checks that the block map lies in the file and within limits. The header
// is returned, as far as it was decoded, even with an error.
func readHeader(src blockio.Source, limits disk.Limits) (header, error) {
	b, err := src.Read("VDI header", 0, headerBytes)
	if err != nil {
		return header{}, err
	}
	le := binary.LittleEndian
	if le.Uint32(b[offSignature:]) != signature {
		return header{}, fmt.Errorf("%w: no VDI signature", disk.ErrFormat)
	}
	h := header{
		imageType:  le.Uint32(b[offImageType:]),
		offsetBmap: le.Uint32(b[offBmap:]),
		offsetData: le.Uint32(b[offData:]),
		diskSize:   le.Uint64(b[offDiskSize:]),
		blockSize:  le.Uint32(b[offBlockSize:]),
		blockExtra: le.Uint32(b[offBlockExtra:]),
		blocks:     le.Uint32(b[offBlocks:]),
		allocated:  le.Uint32(b[offAllocated:]),
	}
	if err := limits.CheckVirtualSize("the VDI header", h.diskSize); err != nil {
		return header{}, err
	}
	// VBoxManage convertfromraw writes sizes that are not whole sectors;
	// qemu reads them rounded up.
	h.diskSize = (h.diskSize + sectorSize - 1) &^ (sectorSize - 1)
	switch h.imageType {
	case typeDynamic, typeStatic:
	case 3, 4:
		return h, fmt.Errorf("%w: an undo or differencing image (type %d) over a parent: it needs its parent, and an image must not make us open other files", disk.ErrUnsafe, h.imageType)
	default:
		return h, fmt.Errorf("%w: image type %d (1 dynamic and 2 static are readable)", disk.ErrUnsupported, h.imageType)
	}
	if v := le.Uint32(b[offVersion:]); v != version11 {
		return h, fmt.Errorf("%w: header version %d.%d (1.1 is readable)", disk.ErrUnsupported, v>>16, v&0xffff)
	}
	if !isZero(b[offUUIDLinkage:offUUIDLinkage+16]) || !isZero(b[offUUIDParent:offUUIDParent+16]) {
		return h, fmt.Errorf("%w: the image links to a parent image (non-null linkage or parent UUID): it needs its parent, and an image must not make us open other files", disk.ErrUnsafe)
	}
	switch {
	case h.blockSize != blockSize:
		return h, fmt.Errorf("%w: block size %d (only %d is readable, as in qemu)", disk.ErrUnsupported, h.blockSize, blockSize)
	case h.blockExtra != 0:
		return h, fmt.Errorf("%w: %d extra bytes per block", disk.ErrUnsupported, h.blockExtra)
	case le.Uint32(b[offSectorSize:]) != sectorSize:
		return h, fmt.Errorf("%w: sector size %d (only %d is readable)", disk.ErrUnsupported, le.Uint32(b[offSectorSize:]), sectorSize)
	case h.offsetBmap%sectorSize != 0 || h.offsetData%sectorSize != 0:
		return h, fmt.Errorf("%w: block map at %#x or data at %#x not on a sector boundary", disk.ErrUnsupported, h.offsetBmap, h.offsetData)
	case h.blocks > maxBlocks:
		return h, fmt.Errorf("%w: %d blocks (at most %d)", disk.ErrUnsupported, h.blocks, maxBlocks)
	case h.diskSize > uint64(h.blocks)*uint64(h.blockSize):
		return h, fmt.Errorf("%w: %d blocks of %d bytes cover less than the virtual size of %d bytes", disk.ErrFormat, h.blocks, h.blockSize, h.diskSize)
	}
	if err := limits.CheckTable("the block map", uint64(h.blocks), 4); err != nil {
		return h, err
	}
	if end := int64(h.offsetBmap) + int64(h.blocks)*4; end > src.Size {
		return h, fmt.Errorf("%w: the block map of %d entries at %#x ends beyond the end of the file (%d bytes)", disk.ErrFormat, h.blocks, h.offsetBmap, src.Size)
	}
	return h, nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
