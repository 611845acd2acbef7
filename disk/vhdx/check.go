package vhdx

import (
	"fmt"
	"io"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// maxProblems bounds the problems a check lists.
const maxProblems = 100

// Check checks an image as qemu-img check does (block/vhdx.c
// vhdx_co_check): every allocated block must lie inside the file and off
// the image's own structures; we also count blocks that share space and
// unknown block states. Each is a corruption. An image whose headers,
// tables or metadata cannot be read is an error (the check cannot run).
// A pending log is replayed in memory first, as qemu replays it on open.
func Check(r io.ReaderAt, size int64) (disk.CheckReport, error) {
	report := disk.CheckReport{Format: "vhdx"}
	l, err := load(blockio.Source{R: r, Size: size}, disk.Limits{}.WithDefaults(), nil)
	if err != nil {
		return report, fmt.Errorf("vhdx: %w", err)
	}
	blocks, bitmaps, err := readBAT(l)
	if err != nil {
		return report, fmt.Errorf("vhdx: %w", err)
	}
	problems, count := batProblems(l, blocks, bitmaps, int(^uint(0)>>1))
	report.Corruptions = count
	if count > len(problems) {
		problems = append(problems, fmt.Sprintf("... and %d more", count-len(problems)))
	}
	for _, p := range problems {
		report.Problems = append(report.Problems, "ERROR "+p)
	}
	return report, nil
}
