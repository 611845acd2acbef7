// Package parallels knows the Parallels disk format
// (docs/interop/parallels.txt in qemu): it recognises and inspects
// Parallels images. It cannot read or write them yet.
package parallels

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

func init() {
	disk.Register(disk.Format{Name: "parallels", Sniff: Sniff, Inspect: Inspect, Extensions: []string{".hdd", ".hds"}})
}

// The magics of version 1 and of version 2 (with extensions).
var (
	magicV1 = []byte("WithoutFreeSpace")
	magicV2 = []byte("WithouFreSpacExt")
)

// Sniff recognises either magic.
func Sniff(r io.ReaderAt, _ int64) bool {
	b := blockio.Peek(r, 0, 16)
	return bytes.Equal(b, magicV1) || bytes.Equal(b, magicV2)
}

// Inspect reads the little-endian header and refuses absurd sizes, cluster
// sizes and catalogs.
func Inspect(r io.ReaderAt, size int64, limits disk.Limits) (disk.Facts, error) {
	facts, err := inspect(blockio.Source{R: r, Size: size}, limits)
	if err != nil {
		return facts, fmt.Errorf("parallels: %w", err)
	}
	return facts, nil
}

func inspect(src blockio.Source, limits disk.Limits) (disk.Facts, error) {
	b, err := src.Read("Parallels header", 0, 64)
	if err != nil {
		return disk.Facts{}, err
	}
	le := binary.LittleEndian
	clusterSectors := le.Uint32(b[28:])
	batEntries := le.Uint32(b[32:])
	sectors := le.Uint64(b[36:])
	if bytes.Equal(b[:16], magicV1) {
		sectors &= 0xffffffff // version 1 has a 32-bit count (qemu parallels_open)
	}
	if err := limits.CheckSectors("the Parallels header", sectors); err != nil {
		return disk.Facts{}, err
	}
	facts := disk.Facts{Info: disk.Info{Format: "parallels", VirtualSize: int64(sectors * 512)}}
	if clusterSectors == 0 || clusterSectors > 1<<21 {
		return facts, fmt.Errorf("%w: cluster of %d sectors", disk.ErrFormat, clusterSectors)
	}
	// CVE-2014-0143: the catalog (BAT) size was trusted by qemu.
	if err := limits.CheckTable("the catalog", uint64(batEntries), 4); err != nil {
		return facts, err
	}
	return facts, nil
}
