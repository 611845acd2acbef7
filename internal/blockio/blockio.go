// Package blockio holds the block-level helpers that every disk format
// needs, so that each is written once: full reads, bounded reads of the
// structures of an untrusted image with errors that say what was missing and
// where, zero detection, and a bounded cache of tables.
package blockio

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/ucphhpc/gen-vm-image-go/disk"
)

// ReadFull reads len(p) bytes at off. A short read is io.ErrUnexpectedEOF:
// io.ReaderAt allows a read that ends at the end of the input to return
// io.EOF with a full buffer, and one that is short to return nil.
func ReadFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Peek reads up to n bytes at off; what lies beyond the end of r is left
// out, so a short input gives a short slice, never an error. Sniffers use
// it: a magic that is not all there does not match.
func Peek(r io.ReaderAt, off int64, n int) []byte {
	b := make([]byte, n)
	m, _ := r.ReadAt(b, off)
	return b[:m]
}

// ReadPadded fills p with the bytes at off of r, which holds size bytes;
// what lies at or beyond size reads as zeros, as qemu's block layer reads
// past the end of an image file. Only the bytes that exist must be read in
// full.
func ReadPadded(r io.ReaderAt, size int64, p []byte, off int64) error {
	avail := max(0, min(int64(len(p)), size-off))
	if avail > 0 {
		if err := ReadFull(r, p[:avail], off); err != nil {
			return err
		}
	}
	clear(p[avail:])
	return nil
}

// Source reads the structures of an image with bounds: every read names
// what it reads, so that a short or hostile file gives an error that says
// what was missing and where.
type Source struct {
	R    io.ReaderAt
	Size int64 // bytes in R
}

// Read returns exactly n bytes at off, or an error wrapping disk.ErrFormat
// that names what and where. Callers bound n (headers and tables of at most
// a few MiB): Read allocates it.
func (s Source) Read(what string, off, n int64) ([]byte, error) {
	if off < 0 || n < 0 || off > s.Size || n > s.Size-off {
		return nil, fmt.Errorf("%w: %s at offset %#x (%d bytes) lies beyond the end of the file (%d bytes)",
			disk.ErrFormat, what, off, n, s.Size)
	}
	buf := make([]byte, n)
	if err := ReadFull(s.R, buf, off); err != nil {
		return nil, fmt.Errorf("%w: reading %s at offset %#x: %w", disk.ErrFormat, what, off, err)
	}
	return buf, nil
}

// zeroPage is compared against with bytes.Equal, which the runtime
// vectorises: several times faster than a loop over words.
var zeroPage [64 << 10]byte

// IsZero reports whether b holds only zero bytes.
func IsZero(b []byte) bool {
	for len(b) > 0 {
		k := min(len(b), len(zeroPage))
		if !bytes.Equal(b[:k], zeroPage[:k]) {
			return false
		}
		b = b[k:]
	}
	return true
}
