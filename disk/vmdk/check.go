package vmdk

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/ucphhpc/gen-vm-image-go/disk"
)

// Check checks a hosted sparse extent as qemu-img check does
// (block/vmdk.c vmdk_co_check): every allocated grain must start inside
// the file, and every grain table must be readable. Like qemu it stops at
// the first problem, which counts as one corruption.
func Check(r io.ReaderAt, fileSize int64) (disk.CheckReport, error) {
	rep := disk.CheckReport{Format: "vmdk"}
	img, err := Open(r, fileSize, disk.OpenOptions{})
	if err != nil {
		return rep, err
	}
	im := img.(*rdImage)
	grains := (im.size + im.grainBytes - 1) / im.grainBytes
	sectorOf := func(g int64) int64 { return g * im.grainBytes / sectorSize }
	// A table is scanned once however many directory entries name it,
	// and only as far as the disk reaches: the work is bounded by the
	// file, not by the size it claims.
	scanned := map[uint32]bool{}
	for i := range int64(len(im.gd)) {
		if im.gd[i] == 0 || i*im.gtEntries >= grains || scanned[im.gd[i]] && (i+1)*im.gtEntries <= grains {
			continue
		}
		scanned[im.gd[i]] = true
		gt, err := im.grainTable(i)
		if err != nil {
			rep.Corruptions++
			rep.Problems = append(rep.Problems, fmt.Sprintf("ERROR: could not get cluster_offset for sector %d: %v", sectorOf(i*im.gtEntries), err))
			break
		}
		bad := int64(-1)
		for k := int64(0); k < im.gtEntries && i*im.gtEntries+k < grains; k++ {
			e := binary.LittleEndian.Uint32(gt[k*4:])
			if im.entryState(e) == grainData && int64(e)*sectorSize >= fileSize {
				bad = i*im.gtEntries + k
				break
			}
		}
		if bad >= 0 {
			rep.Corruptions++
			rep.Problems = append(rep.Problems, fmt.Sprintf("ERROR: cluster offset for sector %d points after EOF", sectorOf(bad)))
			break
		}
	}
	return rep, nil
}
