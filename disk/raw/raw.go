// Package raw reads and writes raw disk images: the virtual disk byte for
// byte, with holes where the file system keeps it sparse.
package raw

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ucphhpc/gen-vm-image-go/disk"
)

func init() {
	disk.Register(disk.Format{
		Name:       "raw",
		Sniff:      func(io.ReaderAt, int64) bool { return true },
		Inspect:    Inspect,
		Open:       Open,
		Create:     Create,
		BlockSize:  func(disk.CreateOptions) int64 { return BlockSize },
		Extensions: []string{".raw", ".img"},
		Generic:    true,
	})
}

// BlockSize is the granularity in which a raw image is allocated: the
// block of the common file systems (ext4, XFS, APFS, NTFS), in which holes
// are punched and extents are mapped.
const BlockSize = 4 << 10

// Inspect describes the size bytes of r as a raw image. There is nothing
// to refuse: a raw image has no header, so it declares nothing and names
// nothing.
func Inspect(_ io.ReaderAt, size int64, _ disk.Limits) (disk.Facts, error) {
	return disk.Facts{Info: disk.Info{Format: "raw", VirtualSize: size}}, nil
}

// Image is a raw image opened for reading.
type Image struct {
	r    io.ReaderAt
	file *os.File // r, when it is a file: the file system then tells where the holes are
	size int64
}

// Open opens the size bytes of r as a raw image; its virtual size is size.
// When r is an *os.File, Extents asks the file system where its holes are;
// otherwise (a member of an archive, say) everything is data.
func Open(r io.ReaderAt, size int64, _ disk.OpenOptions) (disk.Image, error) {
	if size < 0 {
		return nil, fmt.Errorf("raw: %w: negative size %d", disk.ErrFormat, size)
	}
	file, _ := r.(*os.File)
	return &Image{r: r, file: file, size: size}, nil
}

// ReadAt reads the image; reads past its size are short, as io.ReaderAt
// says.
func (m *Image) ReadAt(p []byte, off int64) (int, error) {
	if off >= m.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	if int64(len(p)) > m.size-off {
		n, err := m.r.ReadAt(p[:m.size-off], off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return m.r.ReadAt(p, off)
}

// Size is the file size.
func (m *Image) Size() int64 { return m.size }

// Close does nothing: the caller owns the file.
func (m *Image) Close() error { return nil }

// Info describes the image.
func (m *Image) Info() disk.Info { return disk.Info{Format: "raw", VirtualSize: m.size} }

// Extents asks the file system where the data is, so that a sparse terabyte
// costs nothing to copy. How it asks depends on the OS (dataExtents, one per
// OS in alloc_*.go); where the file system cannot tell, or the image is not
// a file, everything is data, and the converter's zero detection finds the
// zeros.
func (m *Image) Extents(off, n int64) ([]disk.Extent, error) {
	end := min(off+n, m.size)
	if off < 0 || off >= end {
		return nil, nil
	}
	var out extentList
	if m.file == nil {
		out.add(off, end, false)
		return out, nil
	}
	dataExtents(m.file, off, end, &out)
	return out, nil
}

// extentList collects extents reported in order and coalesces neighbours of
// the same kind, as disk.Image.Extents promises.
type extentList []disk.Extent

// add appends [from, to) as data or, if zero, as a hole; empty runs are
// dropped.
func (l *extentList) add(from, to int64, zero bool) {
	if to <= from {
		return
	}
	if k := len(*l) - 1; k >= 0 && (*l)[k].Zero == zero && (*l)[k].End() == from {
		(*l)[k].Length += to - from
		return
	}
	*l = append(*l, disk.Extent{Offset: from, Length: to - from, Zero: zero})
}

// Writer writes a raw image: a sparse file of exactly the virtual size.
type Writer struct {
	f      *os.File
	size   int64
	closed bool
}

// Create makes f a raw image of size bytes, all holes.
func Create(f *os.File, size int64, _ disk.CreateOptions) (disk.Writer, error) {
	if size < 0 {
		return nil, fmt.Errorf("raw: negative size %d", size)
	}
	makeSparse(f)
	if err := f.Truncate(size); err != nil {
		return nil, fmt.Errorf("raw: %w", err)
	}
	return &Writer{f: f, size: size}, nil
}

// WriteAt writes p at off; writes beyond the virtual size are refused.
func (w *Writer) WriteAt(p []byte, off int64) (int, error) {
	if w.closed {
		return 0, errors.New("raw: write after close")
	}
	if off < 0 || off+int64(len(p)) > w.size {
		return 0, fmt.Errorf("raw: write of %d bytes at %d beyond the virtual size %d", len(p), off, w.size)
	}
	// No fallocate: in a sparse file each preallocated range becomes
	// unwritten extents that the write then converts.
	return w.f.WriteAt(p, off)
}

// Resize truncates or extends the file.
func (w *Writer) Resize(size int64, allowShrink bool) error {
	if w.closed {
		return errors.New("raw: resize after close")
	}
	if size < w.size && !allowShrink {
		return fmt.Errorf("raw: %w: from %d to %d bytes", disk.ErrShrink, w.size, size)
	}
	if err := w.f.Truncate(size); err != nil {
		return fmt.Errorf("raw: %w", err)
	}
	w.size = size
	return nil
}

// Close has no metadata to write.
func (w *Writer) Close() error {
	w.closed = true
	return nil
}
