package vdi

import (
	"fmt"
	"io"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// maxProblems bounds the findings a report lists.
const maxProblems = 20

// Check is qemu-img check for VDI (block/vdi.c vdi_co_check): every stored
// block's index lies below the block count and is used once, and the
// header's count of allocated blocks is right. Each finding is a
// corruption. An image that cannot be opened is an error.
func Check(r io.ReaderAt, size int64) (disk.CheckReport, error) {
	src := blockio.Source{R: r, Size: size}
	rep := disk.CheckReport{Format: "vdi"}
	h, err := readHeader(src, disk.Limits{})
	if err != nil {
		return rep, fmt.Errorf("vdi: %w", err)
	}
	bmap, err := readBmap(src, h)
	if err != nil {
		return rep, fmt.Errorf("vdi: %w", err)
	}
	problem := func(format string, args ...any) {
		rep.Corruptions++
		if len(rep.Problems) < maxProblems {
			rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...))
		}
	}
	used := make([]uint64, (len(bmap)+63)/64) // one bit per block index
	var allocated uint32
	for b, e := range bmap {
		if e >= discarded {
			continue
		}
		if e >= h.blocks {
			problem("block %d is stored at index %d, beyond the %d blocks of the image", b, e, h.blocks)
			continue
		}
		allocated++
		if used[e/64]&(1<<(e%64)) != 0 {
			problem("block index %d is used twice (again by block %d)", e, b)
			continue
		}
		used[e/64] |= 1 << (e % 64)
	}
	if allocated != h.allocated {
		problem("the header counts %d allocated blocks, the block map %d", h.allocated, allocated)
	}
	return rep, nil
}
