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

// Info describes an image, for `gen-vm-image info` and for the pipeline's
// messages, in the vocabulary of qemu-img info. Fields a format does not
// have stay at their zero value.
type Info struct {
	Format        string
	VirtualSize   int64
	ClusterSize   int64 // the allocation unit, where the format has one
	BackingFile   string
	BackingFormat string
	Encrypted     bool
	Dirty         bool // not closed cleanly
	// NoDirtyFlag: qemu-img info prints no dirty-flag for the format (its
	// driver reports none: Parallels).
	NoDirtyFlag bool
	Snapshots   int // internal snapshots
	// Specific is what only this format has: qemu-img info's "Format
	// specific information". Nil where the format has nothing to add.
	Specific *Specific
}

// Specific is the format-specific part of Info. qemu-img info shows it as
// indented "label: value" lines under "Format specific information:" in
// text, and as "format-specific": {"type": Type, "data": {key: value, ...}}
// in JSON. Both renderings come from Fields, which are in qemu-img's order.
type Specific struct {
	Type   string // the format's name, as qemu-img spells it
	Fields []Field
}

// Field is one entry of Specific.
type Field struct {
	Key   string // the JSON key, as qemu-img spells it: "compression-type"
	Label string // the text label: "compression type"
	// Value is a string, a bool, an int or an int64, or a []Field for a
	// nested object.
	Value any
}

// Field returns the value of the field with the JSON key key, or nil. It
// may be called on a nil *Specific.
func (s *Specific) Field(key string) any {
	if s == nil {
		return nil
	}
	for _, f := range s.Fields {
		if f.Key == key {
			return f.Value
		}
	}
	return nil
}

// Facts is what a format's Inspect learned from an image's headers.
type Facts struct {
	// Info is what the headers declare. Inspect sets it (Info.Format is
	// then not empty) as soon as the headers are decoded, before it looks
	// for reasons to refuse the image, so that an image that will not be
	// read can still be described.
	Info Info
	// Notes are findings worth a verbose message (a dirty qcow2, a VMDK's
	// createType, ...), none of them a reason to refuse.
	Notes []string
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
	// ErrLimit: the image declares a size, table or count beyond what any
	// sane image needs (see Limits); refused before anything is allocated
	// for it.
	ErrLimit = errors.New("beyond a safety limit")
	// ErrShrink: a resize below the current size without allowShrink.
	ErrShrink = errors.New("shrinking would discard data")
)

// FileName is a Field value that stands for the name of the image's file,
// which the format does not know: the renderer puts the name in its place
// (qemu-img info names the file of each VMDK extent).
type FileName struct{}
