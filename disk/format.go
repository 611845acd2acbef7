package disk

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
)

// OpenOptions are the caller's choices when opening an input image. There
// are none yet: nothing about reading an image is the caller's to choose
// (in particular, no image may make us open another file).
type OpenOptions struct{}

// CreateOptions are the caller's choices when creating an output image.
type CreateOptions struct {
	// Options are the format's own, as qemu-img spells them (cluster_size,
	// subformat, ...): checked against Format.Options before Create sees
	// them (Format.CheckOptions).
	Options map[string]string
	// Compress stores the data compressed, as qemu-img convert -c does;
	// only for formats whose Compress is set. The Writer is then a
	// Compressor.
	Compress bool
}

// Format is one disk image format. Open, Create and Check may be nil when
// the format cannot be read, cannot be written or has no consistency check.
//
// Readers take an io.ReaderAt and its size, not a file, so that an image
// inside another file (an OVA member, a registry layer) is read in place;
// writers need a file to truncate and extend.
type Format struct {
	Name string
	// Aliases are other names the format answers to on the command line
	// and in architecture files ("vhd" for vpc); Lookup resolves them to
	// the format, whose Name stays the one reports use.
	Aliases []string
	// Sniff reports whether the content is this format. It reads at most a
	// few sectors at the start and end of r, whose total length is size.
	Sniff func(r io.ReaderAt, size int64) bool
	// Inspect reads the image's headers, with a small, fixed number of
	// bounded reads, and says what they declare (Facts) and, as an error,
	// why the image must not be read: it refers to other files (ErrUnsafe),
	// is encrypted or uses features we do not know (ErrUnsupported),
	// declares sizes beyond limits (ErrLimit) or is malformed (ErrFormat).
	// The error starts with the format's name. Facts.Info is set as soon as
	// the headers are decoded, even when the image is then refused. Nil for
	// formats recognised by their magic alone: they declare nothing we
	// read, and cannot refer to other files.
	Inspect func(r io.ReaderAt, size int64, limits Limits) (Facts, error)
	// Open opens the image for reading. r must allow concurrent ReadAt
	// calls if the image is read concurrently; the image does not close it.
	Open   func(r io.ReaderAt, size int64, opt OpenOptions) (Image, error)
	Create func(f *os.File, size int64, opt CreateOptions) (Writer, error)
	// BlockSize is the granularity in which an image Create makes with opt
	// allocates its storage (qcow2: a cluster; raw: a file system block).
	// The converter detects zeros in aligned blocks of this size: finding
	// smaller ones inside a block that is allocated anyway would only split
	// writes. Required with Create.
	BlockSize func(opt CreateOptions) int64
	Check     func(r io.ReaderAt, size int64) (CheckReport, error)
	// Generic formats (raw) match anything; they are tried last and never
	// count towards polyglot detection.
	Generic bool
	// Options are the create options the format takes (nil: none).
	Options []Option
	// Validate checks what else the options must be than the names and
	// values Options lists (a cluster size that is a power of two), before
	// anything is created. Optional.
	Validate func(opt CreateOptions) error
	// Compress: the format can store data compressed; with
	// CreateOptions.Compress, Create's Writer is a Compressor.
	Compress bool
	// Size is the virtual size an image made with opt has when size is
	// asked for, and, when they differ, why (for -v): qemu-img rounds up to
	// a sector, a VHD to its CHS geometry or, with force_size, to a MiB.
	// nil: size rounded up to a multiple of 512.
	Size func(size int64, opt CreateOptions) (int64, string, error)
	// Extensions are the file name extensions of images of this format
	// (".qcow2"), so that convert can take an output's format from its
	// name. Only a name, never evidence of the content.
	Extensions []string
}

// registry is the table Register fills; formats register from their init
// functions, so the set is fixed before main runs.
var registry = struct {
	sync.RWMutex
	formats map[string]Format
	aliases map[string]string // alias -> name
}{formats: map[string]Format{}, aliases: map[string]string{}}

// Register adds a format to the table. Registering a name twice, or a
// format without a name, a Sniff, or with a Create but no BlockSize panics:
// it is a programming error.
func Register(f Format) {
	switch {
	case f.Name == "":
		panic("disk: format registered without a name")
	case f.Sniff == nil:
		panic("disk: format registered without a Sniff: " + f.Name)
	case f.Create != nil && f.BlockSize == nil:
		panic("disk: writable format registered without a BlockSize: " + f.Name)
	}
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.formats[f.Name]; dup || registry.aliases[f.Name] != "" {
		panic("disk: format registered twice: " + f.Name)
	}
	for _, a := range f.Aliases {
		if _, dup := registry.formats[a]; dup || registry.aliases[a] != "" || a == f.Name {
			panic("disk: format alias registered twice: " + a)
		}
		registry.aliases[a] = f.Name
	}
	registry.formats[f.Name] = f
}

// Lookup returns the format registered under name or under an alias of
// it.
func Lookup(name string) (Format, bool) {
	registry.RLock()
	defer registry.RUnlock()
	if real, ok := registry.aliases[name]; ok {
		name = real
	}
	f, ok := registry.formats[name]
	return f, ok
}

// WithAliases returns names followed by the aliases of the formats they
// name: every spelling a user may give for one of them.
func WithAliases(names []string) []string {
	out := slices.Clone(names)
	for _, n := range names {
		if f, ok := Lookup(n); ok {
			out = append(out, f.Aliases...)
		}
	}
	return out
}

// Formats returns every registered format, sorted by name.
func Formats() []Format {
	registry.RLock()
	defer registry.RUnlock()
	out := make([]Format, 0, len(registry.formats))
	for _, f := range registry.formats {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// WritableFormats names the formats that have a Create, sorted.
func WritableFormats() []string {
	var names []string
	for _, f := range Formats() {
		if f.Create != nil {
			names = append(names, f.Name)
		}
	}
	return names
}

// ReadableFormats names the formats that have an Open, sorted.
func ReadableFormats() []string {
	var names []string
	for _, f := range Formats() {
		if f.Open != nil {
			names = append(names, f.Name)
		}
	}
	return names
}

// CheckFile runs the format's Check on a whole file. Check must not be nil.
func (f Format) CheckFile(file *os.File) (CheckReport, error) {
	st, err := file.Stat()
	if err != nil {
		return CheckReport{}, fmt.Errorf("%s: check: %w", f.Name, err)
	}
	return f.Check(file, st.Size())
}

// Sniff returns the names of every specific (non-generic) format whose magic
// matches the content. More than one name means a polyglot. None means only
// a generic format (raw) fits.
func Sniff(r io.ReaderAt, size int64) []string {
	var names []string
	for _, f := range Formats() {
		if !f.Generic && f.Sniff != nil && f.Sniff(r, size) {
			names = append(names, f.Name)
		}
	}
	return names
}

// Detect names the format of the content: the single specific format that
// matches, or the generic one when none does. A polyglot is an error.
func Detect(r io.ReaderAt, size int64) (string, error) {
	names := Sniff(r, size)
	switch len(names) {
	case 0:
		for _, f := range Formats() {
			if f.Generic {
				return f.Name, nil
			}
		}
		return "", fmt.Errorf("%w: no known format matches the content", ErrFormat)
	case 1:
		return names[0], nil
	default:
		return "", fmt.Errorf("%w: content matches several formats at once (%v); refusing a possible polyglot", ErrUnsafe, names)
	}
}

// ForExtension returns the format whose images are named with the
// extension of name (".img" and ".raw": raw), and whether there is one.
func ForExtension(name string) (Format, bool) {
	ext := strings.ToLower(filepath.Ext(name))
	if ext == "" {
		return Format{}, false
	}
	for _, f := range Formats() {
		if slices.Contains(f.Extensions, ext) {
			return f, true
		}
	}
	return Format{}, false
}
