package blockio

import (
	"encoding/binary"
	"hash"
	"hash/crc32"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// overlapFrom is the write size from which a fingerprint's CRC runs beside
// the write: below it, a goroutine costs more than it saves.
const overlapFrom = 256 << 10

// Fingerprint digests what a writer writes, in the order it is written:
// for each write, where it went, its length and a CRC-32C of its bytes.
// Formats that need identifiers (GUIDs, UUIDs) derive them from it, so that
// the same image gets the same ones and no clock or chance reaches a file.
// Its hash is the format's to write to as well (its spec, its tables), and
// to sum.
type Fingerprint struct {
	hash.Hash
}

// NewFingerprint folds the writes into h (e.g. sha256.New()).
func NewFingerprint(h hash.Hash) *Fingerprint { return &Fingerprint{Hash: h} }

// Add starts the fingerprint of the write of p at off and returns the
// function that folds it in; p must not change until it has returned. A
// large write's CRC runs on another core while the caller writes p, which
// it would otherwise wait for: the writer of a conversion is its one
// serial step.
func (f *Fingerprint) Add(p []byte, off int64) (fold func()) {
	var rec [20]byte
	binary.LittleEndian.PutUint64(rec[0:], uint64(off))
	binary.LittleEndian.PutUint64(rec[8:], uint64(len(p)))
	if len(p) < overlapFrom {
		binary.LittleEndian.PutUint32(rec[16:], crc32.Checksum(p, castagnoli))
		f.Write(rec[:])
		return func() {}
	}
	sum := make(chan uint32, 1)
	go func() { sum <- crc32.Checksum(p, castagnoli) }()
	return func() {
		binary.LittleEndian.PutUint32(rec[16:], <-sum)
		f.Write(rec[:])
	}
}
