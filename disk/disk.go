// Package disk is the format-neutral model of a virtual disk: an Image to
// read, a Writer to write, the Extents that say what is stored where, and the
// registry in which every format package enters itself (like image.RegisterFormat
// in Go's standard library).
package disk

import (
	"errors"
	"io"
)

// Extent is a run of the virtual disk with one kind of content.
type Extent struct {
	Offset int64 // virtual offset in bytes
	Length int64 // bytes
	// Zero is true when the run reads as zeros without any data being stored
	// (holes, unallocated or zero clusters). Data runs may still hold zeros.
	Zero bool
	// Compressed is true when the run's data is stored compressed; a hint for
	// schedulers (decompression costs CPU), not a difference in content.
	Compressed bool
}

// End returns the first virtual offset after the extent.
func (e Extent) End() int64 { return e.Offset + e.Length }

// Image is a virtual block device opened for reading.
//
// ReadAt and Extents must be safe for concurrent use: the converter reads
// several chunks at once.
type Image interface {
	io.ReaderAt // reads the virtual disk; unallocated ranges read as zeros
	// Size is the virtual size in bytes.
	Size() int64
	// Extents describes [off, off+n) as Data and Zero runs, coalesced, in
	// order, covering the range exactly (n is clipped at Size).
	Extents(off, n int64) ([]Extent, error)
	// Close releases what the image holds. It does not close the file the
	// image was opened from: whoever opened the file closes it.
	Close() error
}

// Writer writes a new image. It is not safe for concurrent use.
type Writer interface {
	io.WriterAt // writes virtual-disk bytes; ranges never written read as zeros
	// Resize changes the virtual size. Shrinking discards the data beyond
	// the new size and is refused unless allowShrink is set.
	Resize(size int64, allowShrink bool) error
	// Close writes the metadata; the image is valid only after Close. It
	// does not close or sync the underlying file.
	Close() error
}

// Info describes an opened image, for `gen-vm-image info` and for the
// pipeline's messages. Fields a format does not have stay at their zero value.
type Info struct {
	Format        string
	VirtualSize   int64
	ClusterSize   int64
	Compat        string // qcow2: "0.10" or "1.1"
	Compression   string // qcow2: "zlib" or "zstd"
	RefcountBits  int
	LazyRefcounts bool
	ExtendedL2    bool
	Dirty         bool
	Corrupt       bool
	BackingFile   string
	BackingFormat string
	DataFile      string
	Encrypted     bool
	Snapshots     int
}

// Describer is implemented by images that can say more about themselves
// than their size.
type Describer interface {
	Info() Info
}

// CheckReport is the result of a format's consistency check, with the
// figures qemu-img check --output=json gives.
type CheckReport struct {
	Format             string   `json:"format"`
	Errors             int      `json:"check-errors"`
	Corruptions        int      `json:"corruptions"`
	Leaks              int      `json:"leaks"`
	ImageEndOffset     int64    `json:"image-end-offset,omitempty"`
	TotalClusters      int64    `json:"total-clusters,omitempty"`
	AllocatedClusters  int64    `json:"allocated-clusters,omitempty"`
	FragmentedClusters int64    `json:"fragmented-clusters,omitempty"`
	CompressedClusters int64    `json:"compressed-clusters,omitempty"`
	Problems           []string `json:"problems,omitempty"` // human-readable, one per finding (capped)
}

// OK reports whether the check found neither corruption nor leaks.
func (r CheckReport) OK() bool { return r.Errors == 0 && r.Corruptions == 0 && r.Leaks == 0 }

// Errors every format package wraps, so callers can tell classes of failure
// apart with errors.Is.
var (
	// ErrFormat: the bytes are not a valid image of the format (malformed,
	// truncated, out-of-range offsets).
	ErrFormat = errors.New("malformed image")
	// ErrUnsupported: a valid image that uses a feature we do not read or
	// write (encryption, unknown feature bits, ...).
	ErrUnsupported = errors.New("unsupported image feature")
	// ErrUnsafe: the image refers to something outside itself (backing
	// file, external data file) and the caller did not opt in.
	ErrUnsafe = errors.New("image refers to another file")
	// ErrShrink: a resize below the current size without allowShrink.
	ErrShrink = errors.New("shrinking would discard data")
)
