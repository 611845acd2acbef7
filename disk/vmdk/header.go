package vmdk

import "encoding/binary"

// Header flags and fields of a hosted sparse extent (VMware "Virtual Disk
// Format 5.0", "Hosted Sparse Extent Header").
const (
	magic = "KDMV"
	// flagRGD: the redundant grain directory is used.
	flagRGD = 1 << 1
	// flagZeroGrain: a grain table entry of 1 is a grain of zeros.
	flagZeroGrain = 1 << 2
	// flagCompressed: grains are compressed (with compressAlgo).
	flagCompressed = 1 << 16
	// flagMarkers: grains and metadata are preceded by markers.
	flagMarkers = 1 << 17

	compressDeflate = 1
	// gteZeroed is the grain table entry of a zeroed grain (flagZeroGrain).
	gteZeroed = 1
	markerGT  = 1
	markerGD  = 2
	// grainMarkerSize is {lba u64, size u32} before a compressed grain.
	grainMarkerSize = 12
)

// marshal encodes the header in its 512 bytes; overHead is the sectors
// before the first grain.
func (h header) marshal(overHead uint64) []byte {
	b := make([]byte, sectorSize)
	le := binary.LittleEndian
	copy(b, magic)
	le.PutUint32(b[4:], h.version)
	le.PutUint32(b[8:], h.flags)
	le.PutUint64(b[12:], h.capacity)
	le.PutUint64(b[20:], h.grainSize)
	le.PutUint64(b[28:], h.descriptorOffset)
	le.PutUint64(b[36:], h.descriptorSize)
	le.PutUint32(b[44:], h.numGTEsPerGT)
	le.PutUint64(b[48:], h.rgdOffset)
	le.PutUint64(b[56:], h.gdOffset)
	le.PutUint64(b[64:], overHead)
	copy(b[73:77], "\n \r\n")
	le.PutUint16(b[77:], h.compressAlgo)
	return b
}

// marker is a metadata marker sector: {numSectors u64, size u32 = 0, type
// u32}, zero-padded to a sector ("Stream-Optimized Compressed Sparse
// Extents").
func marker(numSectors uint64, typ uint32) []byte {
	b := make([]byte, sectorSize)
	binary.LittleEndian.PutUint64(b, numSectors)
	binary.LittleEndian.PutUint32(b[12:], typ)
	return b
}
