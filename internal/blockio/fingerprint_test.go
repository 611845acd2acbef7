package blockio

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"hash/crc32"
	"testing"
)

// TestFingerprintIsTheRecordOfEachWrite: small writes (CRC inline) and
// large ones (CRC beside the write) fold the same record in the order of
// the writes, whatever the goroutines did.
func TestFingerprintIsTheRecordOfEachWrite(t *testing.T) {
	writes := []struct {
		off int64
		n   int
	}{{0, 512}, {1 << 20, overlapFrom}, {5 << 20, 3 * overlapFrom}, {9 << 20, 4096}, {12 << 20, overlapFrom + 1}}
	want := sha256.New()
	want.Write([]byte("prefix"))
	got := NewFingerprint(sha256.New())
	got.Write([]byte("prefix"))
	for i, w := range writes {
		p := bytes.Repeat([]byte{byte(i + 1), byte(i * 7)}, w.n/2+1)[:w.n]
		var rec [20]byte
		binary.LittleEndian.PutUint64(rec[0:], uint64(w.off))
		binary.LittleEndian.PutUint64(rec[8:], uint64(w.n))
		binary.LittleEndian.PutUint32(rec[16:], crc32.Checksum(p, crc32.MakeTable(crc32.Castagnoli)))
		want.Write(rec[:])
		got.Add(p, w.off)()
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatal("the fingerprint is not the digest of the writes' records")
	}
}
