package parallels

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// The header (docs/interop/parallels.txt), little-endian:
//
//	0  magic[16]  16 version (2)  20 heads  24 cylinders  28 tracks (sectors
//	a cluster)  32 bat_entries  36 nb_sectors (64 bits; 32 in version 1)
//	44 inuse  48 data_off (sectors)  52 flags  56 ext_off (sectors)
//
// and the BAT follows it at byte 64.
const (
	headerSize     = 64
	sectorSize     = 512
	version        = 2
	inUseMagic     = 0x746f6e59 // "Ynot": the image is open for writing
	heads          = 16         // geometry qemu-img writes (it is not used)
	sectorsPerCyl  = 32
	maxClusterSecs = 1 << 21 // 1 GiB clusters: BAT offsets fit in 63 bits

	defaultClusterSize = 1 << 20
	maxWriteCluster    = 1 << 30
)

// The magics of version 1 (BAT in sectors) and of version 2 (BAT in
// clusters, extensions).
var (
	magicV1 = []byte("WithoutFreeSpace")
	magicV2 = []byte("WithouFreSpacExt")
)

type header struct {
	v1          bool   // "WithoutFreeSpace": BAT entries count sectors
	tracks      uint32 // sectors per cluster
	batEntries  uint32
	sectors     uint64 // virtual size in sectors
	inUse       bool
	dataOff     uint32 // sectors
	clusterSize int64
}

func (h header) info() disk.Info {
	if h.tracks == 0 && h.sectors == 0 {
		return disk.Info{}
	}
	// qemu-img info shows no cluster size for Parallels images.
	return disk.Info{Format: "parallels", VirtualSize: int64(h.sectors * sectorSize), NoDirtyFlag: true}
}

// entryUnit is what a BAT entry counts, in bytes.
func (h header) entryUnit() int64 {
	if h.v1 {
		return sectorSize
	}
	return h.clusterSize
}

// readHeader reads and checks the header as qemu's parallels_open does, and
// that the BAT lies in the file and within limits. The header is returned,
// as far as it was decoded, even with an error.
func readHeader(src blockio.Source, limits disk.Limits) (header, error) {
	b, err := src.Read("Parallels header", 0, headerSize)
	if err != nil {
		return header{}, err
	}
	le := binary.LittleEndian
	var h header
	switch {
	case bytes.Equal(b[:16], magicV1):
		h.v1 = true
	case bytes.Equal(b[:16], magicV2):
	default:
		return header{}, fmt.Errorf("%w: no Parallels signature", disk.ErrFormat)
	}
	h.tracks = le.Uint32(b[28:])
	h.batEntries = le.Uint32(b[32:])
	h.sectors = le.Uint64(b[36:])
	if h.v1 {
		h.sectors &= 0xffffffff // version 1 has a 32-bit count (qemu parallels_open)
	}
	h.inUse = le.Uint32(b[44:]) == inUseMagic
	h.dataOff = le.Uint32(b[48:])
	if err := limits.CheckSectors("the Parallels header", h.sectors); err != nil {
		return header{}, err
	}
	if v := le.Uint32(b[16:]); v != version {
		return h, fmt.Errorf("%w: version %d (2 is readable)", disk.ErrUnsupported, v)
	}
	if h.tracks == 0 || h.tracks > maxClusterSecs {
		return h, fmt.Errorf("%w: cluster of %d sectors", disk.ErrFormat, h.tracks)
	}
	h.clusterSize = int64(h.tracks) * sectorSize
	// CVE-2014-0143: the catalog (BAT) size was trusted by qemu.
	if err := limits.CheckTable("the catalog", uint64(h.batEntries), 4); err != nil {
		return h, err
	}
	if end := headerSize + int64(h.batEntries)*4; end > src.Size {
		return h, fmt.Errorf("%w: the catalog of %d entries ends beyond the end of the file (%d bytes)", disk.ErrFormat, h.batEntries, src.Size)
	}
	return h, nil
}

// readBAT reads the catalog, whose place readHeader checked.
func readBAT(src blockio.Source, h header) ([]uint32, error) {
	bat := make([]uint32, h.batEntries)
	const chunk = 64 << 10 // entries per read
	for i := 0; i < len(bat); i += chunk {
		n := min(chunk, len(bat)-i)
		b, err := src.Read("the catalog", headerSize+int64(i)*4, int64(n)*4)
		if err != nil {
			return nil, err
		}
		for j := range n {
			bat[i+j] = binary.LittleEndian.Uint32(b[4*j:])
		}
	}
	return bat, nil
}
