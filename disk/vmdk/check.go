package vmdk

import (
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
	for g := int64(0); g < grains; g++ {
		if im.gd[g/im.gtEntries] == 0 {
			g += im.gtEntries - 1 - g%im.gtEntries
			continue
		}
		st, sector, err := im.grain(g)
		if err != nil {
			rep.Corruptions++
			rep.Problems = append(rep.Problems, fmt.Sprintf("ERROR: could not get cluster_offset for sector %d: %v", g*im.grainBytes/sectorSize, err))
			break
		}
		if st == grainData && sector*sectorSize >= fileSize {
			rep.Corruptions++
			rep.Problems = append(rep.Problems, fmt.Sprintf("ERROR: cluster offset for sector %d points after EOF", g*im.grainBytes/sectorSize))
			break
		}
	}
	return rep, nil
}
