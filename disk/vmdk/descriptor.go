package vmdk

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/size"
)

// descriptor is a VMDK text descriptor (VMware "Virtual Disk Format 5.0",
// "The Descriptor File"): header keys, extents and the disk database.
type descriptor struct {
	keys    map[string]descValue // every "key = value" line, ddb.* included
	extents []extent
}

type descValue struct {
	value string
	line  int
}

// extent is one extent line: ACCESS SECTORS TYPE ["FILE" [OFFSET]].
type extent struct {
	line    int
	access  string // RW, RDONLY, NOACCESS
	sectors uint64
	kind    string // FLAT, SPARSE, ZERO, VMFS, ...
	file    string // "" for ZERO extents
	hasFile bool
	offset  uint64
}

// extentKinds are the extent types of the specification (and qemu's
// vmdk_parse_extents); ZERO is the only one without a file.
var extentKinds = map[string]bool{
	"FLAT": true, "SPARSE": true, "ZERO": true, "VMFS": true, "VMFSSPARSE": true,
	"VMFSRDM": true, "VMFSRAW": true, "SESPARSE": true,
}

var extentAccess = map[string]bool{"RW": true, "RDONLY": true, "NOACCESS": true}

// parseDescriptor parses a descriptor strictly: every line must be blank,
// a comment, a "key = value" pair or an extent, or the descriptor is
// refused. text is the descriptor up to its first NUL (the padding of an
// embedded descriptor). Line numbers in errors count from 1.
func parseDescriptor(text []byte, limits disk.Limits) (*descriptor, error) {
	if limit := limits.WithDefaults().MaxDescriptorBytes; int64(len(text)) > limit {
		return nil, refuse(disk.ErrLimit, "descriptor of %d bytes exceeds the limit of %s", len(text), size.Format(limit))
	}
	d := &descriptor{keys: map[string]descValue{}}
	lineNo := 0
	for len(text) > 0 {
		lineNo++
		var raw []byte
		if i := bytes.IndexByte(text, '\n'); i >= 0 {
			raw, text = text[:i], text[i+1:]
		} else {
			raw, text = text, nil
		}
		if err := checkText(raw); err != nil {
			return nil, refuse(disk.ErrFormat, "descriptor line %d: %v", lineNo, err)
		}
		line := strings.Trim(string(raw), " \t\r")
		switch {
		case line == "" || line[0] == '#':
			continue
		case extentAccess[firstWord(line)]:
			e, err := parseExtent(line)
			if err != nil {
				return nil, refuse(disk.ErrFormat, "descriptor line %d: %v: %s", lineNo, err, disk.Quote(line))
			}
			e.line = lineNo
			d.extents = append(d.extents, e)
		default:
			key, value, err := parseKeyValue(line)
			if err != nil {
				return nil, refuse(disk.ErrFormat, "descriptor line %d: %v: %s", lineNo, err, disk.Quote(line))
			}
			lower := strings.ToLower(key)
			if prev, dup := d.keys[lower]; dup {
				return nil, refuse(disk.ErrFormat, "descriptor line %d: %s is given twice (first on line %d); an ambiguous descriptor is refused",
					lineNo, key, prev.line)
			}
			d.keys[lower] = descValue{value, lineNo}
		}
	}
	return d, nil
}

// checkText allows printable UTF-8 and tabs; carriage returns only at the
// end of a line (CRLF descriptors exist).
func checkText(line []byte) error {
	line = bytes.TrimSuffix(line, []byte("\r"))
	if !utf8.Valid(line) {
		return fmt.Errorf("not valid UTF-8 text")
	}
	for i, c := range line {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return fmt.Errorf("control byte %#02x at column %d", c, i+1)
		}
	}
	return nil
}

func firstWord(line string) string {
	if i := strings.IndexAny(line, " \t"); i >= 0 {
		return line[:i]
	}
	return line
}

// parseKeyValue reads `key = value` or `key = "value"`; keys are
// identifiers with dots (ddb.geometry.cylinders).
func parseKeyValue(line string) (string, string, error) {
	eq := strings.IndexByte(line, '=')
	if eq < 0 {
		return "", "", fmt.Errorf("neither a comment, a key = value pair nor an extent")
	}
	key := strings.TrimRight(line[:eq], " \t")
	if !isKey(key) {
		return "", "", fmt.Errorf("%s is not a key", disk.Quote(key))
	}
	value := strings.TrimLeft(line[eq+1:], " \t")
	if strings.HasPrefix(value, `"`) {
		end := strings.IndexByte(value[1:], '"')
		if end < 0 {
			return "", "", fmt.Errorf("unterminated quoted value")
		}
		if rest := strings.TrimSpace(value[end+2:]); rest != "" {
			return "", "", fmt.Errorf("text after the quoted value")
		}
		return key, value[1 : end+1], nil
	}
	if value == "" || strings.ContainsAny(value, " \t\"") {
		return "", "", fmt.Errorf("an unquoted value must be one word")
	}
	return key, value, nil
}

func isKey(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '.' || c == '_'):
		default:
			return false
		}
	}
	return true
}

// parseExtent reads ACCESS SECTORS TYPE ["FILE" [OFFSET]].
func parseExtent(line string) (extent, error) {
	var e extent
	e.access, line = cutWord(line)
	var n string
	n, line = cutWord(line)
	sectors, err := strconv.ParseUint(n, 10, 64)
	if err != nil {
		return e, fmt.Errorf("extent size %s is not a sector count", disk.Quote(n))
	}
	e.sectors = sectors
	e.kind, line = cutWord(line)
	if !extentKinds[e.kind] {
		return e, fmt.Errorf("unknown extent type %s", disk.Quote(e.kind))
	}
	if line == "" {
		if e.kind != "ZERO" {
			return e, fmt.Errorf("a %s extent needs a file name", e.kind)
		}
		return e, nil
	}
	if e.kind == "ZERO" {
		return e, fmt.Errorf("a ZERO extent has no file name")
	}
	if line[0] != '"' {
		return e, fmt.Errorf("the extent's file name must be quoted")
	}
	end := strings.IndexByte(line[1:], '"')
	if end < 0 {
		return e, fmt.Errorf("unterminated file name")
	}
	e.file, e.hasFile = line[1:end+1], true
	line = strings.TrimLeft(line[end+2:], " \t")
	if line != "" {
		off, rest := cutWord(line)
		if e.offset, err = strconv.ParseUint(off, 10, 64); err != nil || rest != "" {
			return e, fmt.Errorf("text after the file name is not an offset")
		}
	}
	return e, nil
}

func cutWord(s string) (word, rest string) {
	s = strings.TrimLeft(s, " \t")
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i], strings.TrimLeft(s[i:], " \t")
	}
	return s, ""
}

// monolithicTypes keep the whole disk in the file that holds the descriptor.
var monolithicTypes = map[string]bool{"monolithicsparse": true, "streamoptimized": true}

// multiFileTypes keep data in files the descriptor names (or on devices).
var multiFileTypes = map[string]bool{
	"monolithicflat": true, "twogbmaxextentsparse": true, "twogbmaxextentflat": true,
	"vmfs": true, "vmfssparse": true, "vmfsthin": true, "vmfsraw": true, "vmfsrdm": true,
	"vmfsrawdevicemap": true, "vmfspassthroughrawdevicemap": true, "vmfspreallocated": true,
	"vmfseagerzeroedthick": true, "fulldevice": true, "partitioneddevice": true, "custom": true,
	"sesparse": true,
}

// checkDescriptor applies the policy to a parsed descriptor. embedded is
// true for the descriptor inside a sparse extent (the file itself is then
// the only extent a reader uses); false for a descriptor file, whose every
// extent is another file by definition.
func checkDescriptor(d *descriptor, embedded bool, limits disk.Limits) error {
	limits = limits.WithDefaults()
	// Paths first: they are the most alarming finding, wherever they are.
	for i, e := range d.extents {
		if strings.ContainsAny(e.file, "/\\") {
			return refuse(disk.ErrUnsafe, "descriptor extent %d (line %d) names %s: an image must not refer to other files, and this name is a path",
				i+1, e.line, disk.Quote(e.file))
		}
	}
	for i, e := range d.extents {
		n := i + 1
		if !e.hasFile {
			continue
		}
		if !embedded {
			return refuse(disk.ErrUnsafe, "descriptor extent %d (line %d) names %s: an image must not refer to other files (this is a VMDK descriptor file whose data lives in the files it names; convert it on a trusted host to a monolithic image first)",
				n, e.line, disk.Quote(e.file))
		}
		if i > 0 {
			return refuse(disk.ErrUnsafe, "descriptor extent %d (line %d) names %s: an image must not refer to other files (a monolithic VMDK has exactly one extent, the file itself)",
				n, e.line, disk.Quote(e.file))
		}
		if e.kind != "SPARSE" {
			return refuse(disk.ErrUnsafe, "descriptor extent %d (line %d) is a %s extent in %s: an image must not refer to other files (a monolithic VMDK's one extent is the SPARSE file itself)",
				n, e.line, e.kind, disk.Quote(e.file))
		}
	}
	if !embedded {
		return refuse(disk.ErrUnsupported, "a VMDK descriptor file without file extents holds no data")
	}
	if v, ok := d.keys["parentfilenamehint"]; ok {
		return refuse(disk.ErrUnsafe, "descriptor line %d names the parent disk %s: a delta disk needs its parent, and an image must not make us open other files",
			v.line, disk.Quote(v.value))
	}
	if v, ok := d.keys["parentcid"]; ok && !strings.EqualFold(v.value, "ffffffff") {
		return refuse(disk.ErrUnsafe, "descriptor line %d: parentCID=%s makes this a delta disk that needs its parent, and an image must not make us open other files",
			v.line, disk.Quote(v.value))
	}
	ct, ok := d.keys["createtype"]
	if !ok {
		return refuse(disk.ErrFormat, "descriptor has no createType")
	}
	kind := strings.ToLower(ct.value)
	switch {
	case monolithicTypes[kind]:
	case multiFileTypes[kind]:
		return refuse(disk.ErrUnsafe, "descriptor line %d: createType %s keeps the disk in other files; an image must not make us open other files",
			ct.line, disk.Quote(ct.value))
	default:
		return refuse(disk.ErrUnsupported, "descriptor line %d: unknown createType %s", ct.line, disk.Quote(ct.value))
	}
	if len(d.extents) != 1 {
		return refuse(disk.ErrFormat, "a %s descriptor must have exactly one extent, the file itself; it has %d", ct.value, len(d.extents))
	}
	if v, ok := d.keys["version"]; ok && v.value != "1" && v.value != "2" && v.value != "3" {
		return refuse(disk.ErrUnsupported, "descriptor line %d: version %s", v.line, disk.Quote(v.value))
	}
	for _, e := range d.extents {
		if e.sectors > uint64(limits.MaxVirtualSize)/512 {
			return refuse(disk.ErrLimit, "descriptor extent on line %d declares %d sectors, more than the virtual size limit of %s",
				e.line, e.sectors, size.Format(limits.MaxVirtualSize))
		}
	}
	return nil
}
