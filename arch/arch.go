// Package arch reads architecture files: the YAML that `gen-vm-image
// multiple` builds images from.
//
//	owner: <string>                # required
//	images:                        # required, a mapping, kept in file order
//	  <key>:
//	    name: <string>             # required
//	    size: <string>             # required, as qemu-img reads it (20G)
//	    version: <string|number>   # optional, kept as written (9.4, 08)
//	    format: <string>           # optional, default qcow2
//	    input:                     # optional
//	      path: <string>           # exactly one of path, url and oci
//	      url: <url> | [<url>...]  # a list gives mirrors, tried in order
//	      oci: <reference>         # a KubeVirt containerDisk: REGISTRY/REPO:TAG or @sha256:...
//	      format: <string>         # optional
//	      disk: <int>              # optional, an OVA's disk (1: the first its OVF lists)
//	      checksum:                # optional
//	        type: <hashlib name>   # required with value; with file, optional
//	        value: <hex>           # exactly one of value and file
//	        file: <url|path>       # a SUMS file listing the digest
//	        signature: <url|path>  # optional, a signature of file
//	        key: <url|path>        # optional, the signer's key (file clear-signed without signature)
//	        buffer_size: <int>     # optional, default 65536
//	        read_bytes: <int>      # optional, hash only the first N bytes
//
// Parse checks the whole file and returns every problem at once, each with
// its line, in a *ValidationError. Unknown keys are ignored, as the Python
// tool ignores them, and listed in Architecture.Warnings.
package arch

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/ucphhpc/gen-vm-image-go/checksum"
)

// MaxFileSize bounds an architecture file; a real one is a few kilobytes.
const MaxFileSize = 4 << 20

// DefaultFormat is an image's format when none is given: by the
// architecture file, the command line or a library caller.
const DefaultFormat = "qcow2"

// OutputName is the file an image is written to: NAME.FORMAT, or
// NAME-VERSION.FORMAT when a version is set (the reference's naming).
func OutputName(name, version, format string) string {
	if version != "" {
		return name + "-" + version + "." + format
	}
	return name + "." + format
}

// ErrTooLarge is returned for a file over MaxFileSize.
var ErrTooLarge = errors.New("architecture file too large")

// Architecture is a parsed, valid architecture file.
type Architecture struct {
	Owner    string
	Images   []Image  // in file order
	Warnings []string // "file:line: path: message" for what was ignored
}

// Image is one entry under images.
type Image struct {
	Key       string // its key under images
	Name      string
	Size      string // as written
	SizeBytes int64  // Size as qemu-img reads it
	Version   string // as written; "" when absent
	Format    string // DefaultFormat when absent
	// FormatOptions are the output format's own options (format_options:),
	// as qemu-img -o spells them; values are kept as written (a YAML true
	// or false is "on" or "off", as qemu-img's switches are).
	FormatOptions map[string]string
	Compress      bool   // compress: true
	Input         *Input // nil for a blank image
	Line          int    // line of Key
}

// Input is the image an Image is based on.
type Input struct {
	Path string   // a local file, or ""
	URL  string   // URLs[0], or ""
	URLs []string // the URL and its mirrors, in order
	// OCI is a containerDisk in a registry, REGISTRY/REPOSITORY:TAG or
	// REGISTRY/REPOSITORY@sha256:DIGEST (the oci:// prefix dropped), or "".
	OCI      string
	Format   string // as declared; "" when absent
	Checksum *Checksum
	// Disk picks the disk of an OVA appliance (disk: N, from 1); 0 when
	// absent (the first disk its OVF lists).
	Disk int
	Line int // line of the input key
}

// Checksum is how an input is verified, as written (BufferSize is
// checksum.DefaultBufferSize when absent), and where.
type Checksum struct {
	checksum.Spec
	Line int // line of the checksum key
}

// Kind says what sort of problem a Problem is, so a caller can map it to
// the reference's return codes.
type Kind int

const (
	Invalid Kind = iota // a value of the wrong type or out of range (reference code 5)
	Missing             // a required key is absent or empty (code 4)
	Syntax              // not YAML, empty, or several documents (code 2)
)

// Problem is one thing wrong with an architecture file.
type Problem struct {
	Line, Column int    // 1-based; 0 when unknown
	Path         string // where, as keys joined by dots: "images.image-1.size"; "" for the file
	Msg          string
	Kind         Kind
}

func (p Problem) format(file string) string {
	var b strings.Builder
	b.WriteString(file)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// ValidationError lists every problem found in an architecture file.
type ValidationError struct {
	File     string
	Problems []Problem // in line order; never empty
}

// maxListed bounds Error's text; Problems always holds them all.
const maxListed = 200

// Error gives one problem per line: "file:line: path: message".
func (e *ValidationError) Error() string {
	lines := make([]string, 0, min(len(e.Problems), maxListed)+1)
	for i, p := range e.Problems {
		if i == maxListed {
			lines = append(lines, fmt.Sprintf("%s: and %d more problems", e.File, len(e.Problems)-maxListed))
			break
		}
		lines = append(lines, p.format(e.File))
	}
	return strings.Join(lines, "\n")
}

// Option changes what Parse and Load accept.
type Option func(*options)

type options struct {
	outputFormats []string // formats images can be written in
	inputFormats  []string // formats an input may declare
	readable      []string // formats named when an input's is not one of inputFormats
	checkOutput   func(format string, options map[string]string, compress bool) error
	// checkReference says why an oci: reference is not one.
	checkReference func(ref string) error
}

// ociScheme is the prefix an oci: reference may be written with.
const ociScheme = "oci://"

// WithReferenceCheck has every input's oci: reference checked by check (the
// registry client's rules), so that a wrong one is reported with its line
// like any other problem. Without it any string is accepted here.
func WithReferenceCheck(check func(ref string) error) Option {
	return func(o *options) { o.checkReference = check }
}

// WithOutputCheck has every image's format options and compression checked
// by check (the format's own rules, which only the format knows), so that
// a wrong one is reported with its line like any other problem.
func WithOutputCheck(check func(format string, options map[string]string, compress bool) error) Option {
	return func(o *options) { o.checkOutput = check }
}

// WithOutputFormats names the formats images can be written in, so that an
// image in any other format is reported with its line like any other
// problem. Without it any format name is accepted here.
func WithOutputFormats(names ...string) Option {
	return func(o *options) { o.outputFormats = append(o.outputFormats, names...) }
}

// WithInputFormats names the formats an input may declare (known) and
// those the message about any other names as the ones that can be read
// (readable). Without it any format name is accepted here.
func WithInputFormats(known, readable []string) Option {
	return func(o *options) {
		o.inputFormats = append(o.inputFormats, known...)
		o.readable = append(o.readable, readable...)
	}
}

// Load reads and parses the architecture file at path. A missing or
// unreadable file gives the os error (test with errors.Is(err,
// fs.ErrNotExist)); a bad one a *ValidationError.
func Load(path string, opts ...Option) (*Architecture, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("architecture file: %w", err)
	}
	defer f.Close()
	// Read one byte past the limit so an oversized file is noticed without
	// reading all of it (or forever, for a device or pipe).
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("architecture file %s: %w", path, err)
	}
	return Parse(data, path, opts...)
}

// Parse parses and validates an architecture file's contents; filename is
// used in messages only.
func Parse(data []byte, filename string, opts ...Option) (*Architecture, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s: %w: more than %d bytes (an architecture file is a few kilobytes)", filename, ErrTooLarge, MaxFileSize)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	p := &parser{file: filename, opts: o}
	a := p.parse(data)
	if len(p.problems) > 0 {
		sort.SliceStable(p.problems, func(i, j int) bool {
			pi, pj := p.problems[i], p.problems[j]
			if pi.Line != pj.Line {
				return pi.Line < pj.Line
			}
			return pi.Column < pj.Column
		})
		return nil, &ValidationError{File: filename, Problems: p.problems}
	}
	return a, nil
}
