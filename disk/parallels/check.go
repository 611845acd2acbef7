package parallels

import (
	"fmt"
	"io"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// maxProblems bounds the findings a report lists.
const maxProblems = 20

// Check is qemu-img check for Parallels images, with its figures (qemu 7.2
// block/parallels.c parallels_co_check): an image not closed cleanly and a
// cluster that starts beyond the end of the file are corruptions; the file
// should end one cluster after the last stored cluster (after the first
// cluster when none is stored), and what lies beyond is leaked, counted in
// clusters. An image that cannot be opened is an error.
func Check(r io.ReaderAt, size int64) (disk.CheckReport, error) {
	src := blockio.Source{R: r, Size: size}
	rep := disk.CheckReport{Format: "parallels"}
	h, err := readHeader(src, disk.Limits{})
	if err != nil {
		return rep, fmt.Errorf("parallels: %w", err)
	}
	bat, err := readBAT(src, h)
	if err != nil {
		return rep, fmt.Errorf("parallels: %w", err)
	}
	problem := func(format string, args ...any) {
		if len(rep.Problems) < maxProblems {
			rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...))
		}
	}
	if h.inUse {
		rep.Corruptions++
		problem("the image was not closed correctly")
	}
	cs := h.clusterSize
	rep.TotalClusters = int64(len(bat))
	var high, prev int64
	for c, e := range bat {
		off := int64(e) * h.entryUnit()
		if off == 0 {
			prev = 0
			continue
		}
		if off > size {
			rep.Corruptions++
			problem("cluster %d is outside the image (at %#x, the file has %d bytes)", c, off, size)
		}
		rep.AllocatedClusters++
		high = max(high, off)
		if prev != 0 && prev+cs != off {
			rep.FragmentedClusters++
		}
		prev = off
	}
	rep.ImageEndOffset = high + cs
	if size > rep.ImageEndOffset {
		rep.Leaks += int((size - rep.ImageEndOffset + cs - 1) / cs)
		problem("%d bytes leaked at the end of the image", size-rep.ImageEndOffset)
	}
	return rep, nil
}
