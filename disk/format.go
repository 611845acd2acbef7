package disk

import (
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
)

// OpenOptions are the caller's choices when opening an input image.
type OpenOptions struct {
	// AllowBacking lets an image read through its backing file. Off by
	// default: a hostile image must not make us open host files.
	AllowBacking bool
}

// CreateOptions are the caller's choices when creating an output image.
type CreateOptions struct {
	// ClusterSize for formats that have one; 0 means the format's default.
	ClusterSize int64
}

// Format is one disk image format. Create and Check may be nil when the
// format cannot be written or has no consistency check.
type Format struct {
	Name string
	// Sniff reports whether the content is this format. It reads at most a
	// few sectors at the start and end of r, whose total length is size.
	Sniff  func(r io.ReaderAt, size int64) bool
	Open   func(f *os.File, opt OpenOptions) (Image, error)
	Create func(f *os.File, size int64, opt CreateOptions) (Writer, error)
	Check  func(f *os.File) (CheckReport, error)
	// Describe reads what the header says without opening the image for
	// reading, so images that Open refuses can still be described. Optional.
	Describe func(f *os.File) (Info, error)
	// Generic formats (raw) match anything; they are tried last and never
	// count towards polyglot detection.
	Generic bool
}

// registry is the table Register fills; formats register from their init
// functions, so the set is fixed before main runs.
var registry = struct {
	sync.RWMutex
	formats map[string]Format
}{formats: map[string]Format{}}

// Register adds a format to the table. Registering a name twice panics: it is
// a programming error.
func Register(f Format) {
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.formats[f.Name]; dup {
		panic("disk: format registered twice: " + f.Name)
	}
	registry.formats[f.Name] = f
}

// Lookup returns the format registered under name.
func Lookup(name string) (Format, bool) {
	registry.RLock()
	defer registry.RUnlock()
	f, ok := registry.formats[name]
	return f, ok
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

// ReadHead reads up to n bytes from the start of r; a short file gives a
// short slice, not an error. Sniffers use it.
func ReadHead(r io.ReaderAt, n int) []byte {
	buf := make([]byte, n)
	m, _ := r.ReadAt(buf, 0)
	return buf[:m]
}
