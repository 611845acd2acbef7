// Package parallels reads and writes the Parallels disk format
// (docs/interop/parallels.txt in qemu; Virtuozzo, OpenVZ ploop): a 64-byte
// header, a block allocation table (BAT) of 32-bit entries and the data
// clusters. Both signatures are read: "WithoutFreeSpace", whose BAT
// counts sectors, and "WithouFreSpacExt", whose BAT counts clusters; the
// writer writes the latter, as qemu-img does. The format extension (dirty
// bitmaps) is ignored, as it does not change what the disk reads.
package parallels

import (
	"bytes"
	"fmt"
	"io"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
	"github.com/ucphhpc/gen-vm-image-go/size"
)

func init() {
	disk.Register(disk.Format{
		Name:      "parallels",
		Sniff:     Sniff,
		Inspect:   Inspect,
		Open:      Open,
		Create:    Create,
		BlockSize: BlockSize,
		Check:     Check,
		Options:   CreateOptions,
		Validate: func(opt disk.CreateOptions) error {
			_, err := clusterSizeOf(opt)
			return err
		},
		Extensions: []string{".hdd", ".hds"},
	})
}

// CreateOptions are the -o options Create takes, as qemu-img spells them.
var CreateOptions = []disk.Option{
	{Name: "cluster_size", Help: "the cluster size: a multiple of 512 bytes up to 1G", Default: "1M"},
}

// Sniff recognises either magic.
func Sniff(r io.ReaderAt, _ int64) bool {
	b := blockio.Peek(r, 0, 16)
	return bytes.Equal(b, magicV1) || bytes.Equal(b, magicV2)
}

// BlockSize is the cluster size: the unit the image allocates.
func BlockSize(opt disk.CreateOptions) int64 {
	cs, err := clusterSizeOf(opt)
	if err != nil {
		return defaultClusterSize // Create refuses the options anyway
	}
	return cs
}

// clusterSizeOf validates a requested cluster size.
func clusterSizeOf(opt disk.CreateOptions) (int64, error) {
	v, given := opt.Options["cluster_size"]
	if !given {
		return defaultClusterSize, nil
	}
	cs, err := size.Parse(v)
	if err != nil {
		return 0, fmt.Errorf("parallels: %w: cluster_size=%s: %v", disk.ErrOption, v, err)
	}
	if cs < sectorSize || cs%sectorSize != 0 || cs > maxWriteCluster {
		return 0, fmt.Errorf("parallels: %w: cluster_size=%s: the cluster size must be a multiple of 512 bytes from 512 to %d bytes", disk.ErrOption, v, int64(maxWriteCluster))
	}
	return cs, nil
}

// Inspect reads the header and refuses absurd sizes, cluster sizes and
// catalogs (BATs), and a BAT that lies beyond the end of the file.
func Inspect(r io.ReaderAt, size int64, limits disk.Limits) (disk.Facts, error) {
	h, err := readHeader(blockio.Source{R: r, Size: size}, limits)
	facts := disk.Facts{Info: h.info()}
	if err != nil {
		return facts, fmt.Errorf("parallels: %w", err)
	}
	if h.inUse {
		facts.Notes = append(facts.Notes, "the image was not closed cleanly (its in-use flag is set): it is read as it is")
	}
	return facts, nil
}
