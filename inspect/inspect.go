// Package inspect is the safety policy for untrusted input images. It runs
// before an image is opened for conversion and decides, from the content
// alone and with a small, fixed number of bounded reads, whether the image
// may be read at all:
//
//   - the format comes from the content; a declared format that contradicts
//     it is refused (ErrMismatch), and so is content that matches several
//     formats at once (ErrPolyglot: a file crafted to be read one way by us
//     and another way by the next program);
//   - nothing inside an image may make a reader open another path: backing
//     files, external data files, VMDK extents other than the file itself,
//     differencing VHD/VHDX parents (disk.ErrUnsafe);
//   - encryption and features we do not know are refused (disk.ErrUnsupported);
//   - absurd geometry (virtual size, table sizes, entry counts) is refused
//     before anything is allocated (ErrLimit);
//   - broken headers are refused (disk.ErrFormat).
//
// This package holds the policy that spans formats: detection from the
// content, the declared format, polyglots and the limits. What each format's
// headers say and why they are refused is the format's own knowledge, in
// disk/<format>, which this package asks through disk.Format.Inspect.
//
// The checks follow the lessons of OpenStack's image format inspector
// (oslo.utils imageutils/format_inspector.py, after CVE-2022-47951,
// CVE-2024-32498 and CVE-2024-40767) and go further where the formats allow:
// VMDK descriptors are parsed line by line, VHD and VHDX checksums are
// verified, and every table size is bounded.
package inspect

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ucphhpc/gen-vm-image-go/disk"

	// Inspect knows every format that registers itself: the ones we read
	// and the ones we only recognise.
	_ "github.com/ucphhpc/gen-vm-image-go/disk/all"
)

// Errors Inspect returns besides disk's classes (disk.ErrFormat,
// disk.ErrUnsupported, disk.ErrUnsafe, disk.ErrLimit), for errors.Is.
var (
	// ErrMismatch: the declared format is not the one the content has.
	ErrMismatch = errors.New("declared format contradicts the content")
	// ErrPolyglot: the content is a valid header of more than one format.
	// Such errors also match disk.ErrUnsafe.
	ErrPolyglot = errors.New("content matches several formats")
	// ErrLimit is disk.ErrLimit, the class of the refusals of sizes, tables
	// and counts beyond the policy's limits.
	ErrLimit = disk.ErrLimit
)

// Default limits, as disk.Limits applies them.
const (
	DefaultMaxVirtualSize = disk.DefaultMaxVirtualSize
	DefaultMaxSnapshots   = disk.DefaultMaxSnapshots
)

// Policy is what the caller allows. The zero value is the safe default.
type Policy struct {
	// MaxVirtualSize caps the virtual size an image may declare; 0 means
	// DefaultMaxVirtualSize.
	MaxVirtualSize int64
	// MaxSnapshots caps qcow2 internal snapshots; 0 means DefaultMaxSnapshots.
	MaxSnapshots int
}

// limits are the policy as the formats' Inspect apply it.
func (p Policy) limits() disk.Limits {
	return disk.Limits{MaxVirtualSize: p.MaxVirtualSize, MaxSnapshots: p.MaxSnapshots}
}

// Report is what inspection found. On a refusal Format and Info say what
// the image is, as far as it could be decoded.
type Report struct {
	Format string
	// VirtualSize as the headers declare it; 0 for formats recognised by
	// their magic alone.
	VirtualSize int64
	// Info is what the headers declare (disk.Facts.Info); its Format is
	// empty when the format declares nothing we read.
	Info disk.Info
	// Notes are findings worth a verbose message (a dirty qcow2, a VMDK's
	// createType, ...), none of them a reason to refuse.
	Notes []string
}

// Inspect decides whether the image in f may be opened. declared is the
// format the user gave ("" when none). On refusal the error says what was
// found and where, and wraps one of ErrMismatch, ErrPolyglot, ErrLimit,
// disk.ErrUnsafe, disk.ErrUnsupported or disk.ErrFormat.
func Inspect(f *os.File, declared string, p Policy) (Report, error) {
	st, err := f.Stat()
	if err != nil {
		return Report{}, fmt.Errorf("inspect: %w", err)
	}
	return InspectAt(f, st.Size(), declared, p)
}

// InspectAt is Inspect for any io.ReaderAt of size bytes.
func InspectAt(r io.ReaderAt, size int64, declared string, p Policy) (Report, error) {
	format, err := Detect(r, size, declared)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Format: format}
	f, _ := disk.Lookup(format)
	if f.Generic && declared == "" {
		if what := notADisk(r, size); what != "" {
			return rep, fmt.Errorf("%w: the content is %s, not a disk image in a format we know; if it really is a raw disk, declare it (-if raw, or format: raw)", ErrNotDisk, what)
		}
	}
	if f.Inspect == nil {
		// Recognised by its magic alone: nothing in it can refer to
		// anything (see disk.Format.Inspect).
		return rep, nil
	}
	facts, err := f.Inspect(r, size, p.limits())
	rep.Info, rep.VirtualSize, rep.Notes = facts.Info, facts.Info.VirtualSize, facts.Notes
	return rep, err
}

// Detect names the format of the content and holds it against the
// declared one ("" when none): the part of the policy that comes before
// any format reads its headers. A polyglot is ErrPolyglot (and
// disk.ErrUnsafe); a declared format that is not the content's, or not a
// format at all, is ErrMismatch.
func Detect(r io.ReaderAt, size int64, declared string) (string, error) {
	if size < 0 {
		return "", fmt.Errorf("%w: negative file size %d", disk.ErrFormat, size)
	}
	format, err := detect(r, size)
	if err != nil {
		return "", err
	}
	if f, known := disk.Lookup(declared); known {
		declared = f.Name // an alias: "vhd" is vpc
	}
	if declared != "" && declared != format {
		if _, known := disk.Lookup(declared); !known {
			return "", fmt.Errorf("%w: the declared format %q is not a format we know (this version reads %s); the content is %s",
				ErrMismatch, declared, strings.Join(disk.ReadableFormats(), ", "), format)
		}
		return "", fmt.Errorf("%w: declared as %s but the content is %s; fix the declared format or leave it out (the format is detected from the content)",
			ErrMismatch, declared, format)
	}
	return format, nil
}

// detect names the format from the content; more than one match is a
// polyglot.
func detect(r io.ReaderAt, size int64) (string, error) {
	names := disk.Sniff(r, size)
	if len(names) > 1 {
		return "", fmt.Errorf("%w (%w): the content is at once %s; a file that two programs would read differently is refused",
			ErrPolyglot, disk.ErrUnsafe, strings.Join(names, " and "))
	}
	if len(names) == 1 {
		return names[0], nil
	}
	return disk.Detect(r, size)
}
