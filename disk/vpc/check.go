package vpc

import (
	"fmt"
	"io"
	"sort"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// maxProblems caps the findings a report lists.
const maxProblems = 20

// Check verifies a VHD as far as its structures go (qemu-img has no check
// for vpc): the footers and the dynamic header (checksums, sizes, the
// table's place), and for dynamic disks that every block lies inside the
// file, after the table, and on no other block. A block past the virtual
// size is a leak. An image that cannot be opened at all is an error, not a
// report.
func Check(r io.ReaderAt, size int64) (disk.CheckReport, error) {
	src := blockio.Source{R: r, Size: size}
	l, err := parse(src, disk.Limits{}.WithDefaults())
	if err != nil {
		return disk.CheckReport{}, fmt.Errorf("vpc: %w", err)
	}
	rep := disk.CheckReport{Format: "vpc"}
	problem := func(format string, args ...any) {
		if len(rep.Problems) < maxProblems {
			rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...))
		}
	}
	if l.footer.diskType == diskFixed {
		rep.ImageEndOffset = size
		return rep, nil
	}
	table, err := src.Read("the block allocation table", l.tableOffset, l.entries*4)
	if err != nil {
		return rep, fmt.Errorf("vpc: %w", err)
	}
	span := bitmapSize(l.blockSize) + l.blockSize
	needed := blocks(l.virtualSize, l.blockSize)
	// The footer copy, the dynamic header and the table: no block may lie
	// on them.
	meta := [][2]int64{{0, footerSize}, {int64(l.footer.dataOffset), int64(l.footer.dataOffset) + dynHeaderSize},
		{l.tableOffset, l.tableOffset + l.entries*4}}
	onMeta := func(start int64) bool {
		for _, m := range meta {
			if start < m[1] && m[0] < start+span {
				return true
			}
		}
		return false
	}
	type placed struct{ index, start int64 }
	var used []placed
	end := (l.tableOffset + l.entries*4 + 511) &^ 511
	for i := int64(0); i < l.entries; i++ {
		e := uint32(table[4*i])<<24 | uint32(table[4*i+1])<<16 | uint32(table[4*i+2])<<8 | uint32(table[4*i+3])
		if e == unallocated {
			continue
		}
		start := int64(e) * 512
		switch {
		case start > size || span > size-start:
			rep.Corruptions++
			problem("block %d at offset %#x runs past the end of the file (%d bytes)", i, start, size)
			continue
		case onMeta(start):
			rep.Corruptions++
			problem("block %d at offset %#x overlaps the header or the block table", i, start)
			continue
		case i >= needed:
			rep.Leaks++
			problem("block %d at offset %#x lies past the virtual size", i, start)
		}
		used = append(used, placed{i, start})
		end = max(end, start+span)
	}
	sort.Slice(used, func(a, b int) bool { return used[a].start < used[b].start })
	for k := 1; k < len(used); k++ {
		if used[k].start < used[k-1].start+span {
			rep.Corruptions++
			problem("blocks %d and %d overlap at offset %#x", used[k-1].index, used[k].index, used[k].start)
		}
	}
	rep.TotalClusters = needed
	rep.AllocatedClusters = int64(len(used))
	for k := 1; k < len(used); k++ {
		if used[k].index != used[k-1].index+1 {
			rep.FragmentedClusters++
		}
	}
	rep.ImageEndOffset = end + footerSize
	return rep, nil
}
