package inspect

import (
	"bytes"
	"io"
	"unicode/utf8"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// ErrNotDisk: content that matches no format and is clearly something else
// than a disk (an HTML page, a text file, an archive): taken as raw, it
// would become a "disk" of garbage with a success. Declaring the format
// raw takes it anyway. It is of the class disk.ErrFormat.
var ErrNotDisk error = notDisk{}

type notDisk struct{}

func (notDisk) Error() string        { return "not a disk image" }
func (notDisk) Is(target error) bool { return target == disk.ErrFormat }

// sniffLen is how much of a file tells what it is.
const sniffLen = 4096

// notADisk says what content that matched no format looks like when it is
// clearly not a disk, or "". A disk that is not one of our formats is raw:
// a partition table, a file system or zeros in its first sectors, never a
// page of text.
func notADisk(r io.ReaderAt, size int64) string {
	if size == 0 {
		return "an empty file"
	}
	head := blockio.Peek(r, 0, int(min(size, sniffLen)))
	trimmed := bytes.TrimLeft(bytes.TrimPrefix(head, []byte("\xef\xbb\xbf")), " \t\r\n")
	lower := bytes.ToLower(trimmed[:min(len(trimmed), 64)])
	switch {
	case bytes.HasPrefix(lower, []byte("<!doctype html")), bytes.HasPrefix(lower, []byte("<html")),
		bytes.HasPrefix(lower, []byte("<head")), bytes.HasPrefix(lower, []byte("<?xml")) && bytes.Contains(bytes.ToLower(head), []byte("<html")):
		return "an HTML page (a directory listing, a login or an error page?)"
	case len(head) >= 262 && bytes.Equal(head[257:262], []byte("ustar")):
		if bytes.HasSuffix(bytes.TrimRight(head[:100], "\x00"), []byte(".ovf")) {
			// single, convert and multiple read an OVA's disk in place
			// (package ova) before inspecting it; the appliance as a whole
			// is not one image.
			return "an OVA appliance (a tar of an OVF descriptor and its disks), not one disk image: give it as the input of single, convert or multiple, which read its disk in place (input.disk / --input-disk picks one)"
		}
		return "a tar archive"
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		return "a ZIP archive"
	case bytes.HasPrefix(head, []byte("%PDF-")):
		return "a PDF document"
	case bytes.HasPrefix(head, []byte("\x7fELF")):
		return "a program (ELF)"
	case isText(head, int64(len(head)) == size):
		return "a text file"
	}
	return ""
}

// isText: valid UTF-8 without control characters other than whitespace.
// A sample of a few bytes says little, unless it is the whole file: a file
// of a dozen characters of text is text.
func isText(b []byte, whole bool) bool {
	if len(b) < 16 && !whole || len(b) == 0 {
		return false
	}
	// A multi-byte character cut at the end of the sample is still text.
	for cut := 0; !whole && cut < utf8.UTFMax && !utf8.Valid(b); cut++ {
		b = b[:len(b)-1]
	}
	if !utf8.Valid(b) {
		return false
	}
	for _, c := range b {
		if c < 0x20 && c != '\n' && c != '\r' && c != '\t' && c != '\f' {
			return false
		}
		if c == 0x7f {
			return false
		}
	}
	return true
}
