// Package ova finds the disks of an OVA appliance (DMTF "Open
// Virtualization Format", DSP0243: a tar of an OVF descriptor, an optional
// manifest and the files it references) where they lie in the tar, so
// that a disk is read in place, through an io.SectionReader, without
// extracting anything.
//
// The tar is untrusted: names in it are only compared with the hrefs of
// the OVF, never used as paths; every member must lie inside the file; the
// number of members and the size of the OVF are bounded; sparse members,
// compressed and chunked files are refused.
package ova

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"archive/tar"

	"github.com/ucphhpc/gen-vm-image-go/disk"
)

const (
	// maxMembers bounds the members of the tar that are looked at.
	maxMembers = 4096
	// maxOVF bounds the OVF descriptor (XML) read into memory.
	maxOVF = 4 << 20
	block  = 512
)

// Disk is one virtual disk of the appliance, in the order of the OVF's
// DiskSection.
type Disk struct {
	ID       string // ovf:diskId
	File     string // the href of its file: the name of a tar member
	Format   string // ovf:format, a URI (VMware's names the VMDK subformat)
	Capacity string // ovf:capacity, as written (with ovf:capacityAllocationUnits)
	Offset   int64  // where the member's data starts in the tar
	Size     int64  // the member's size
}

// Appliance is what Read found.
type Appliance struct {
	OVF   string // the descriptor's member name
	Disks []Disk
}

// Is reports whether the content is a tar whose first member is an OVF
// descriptor, as the OVF specification requires of an OVA (section 5.3).
func Is(r io.ReaderAt, size int64) bool {
	if size < 2*block {
		return false
	}
	head := make([]byte, block)
	if n, _ := r.ReadAt(head, 0); n < block || !bytes.Equal(head[257:262], []byte("ustar")) {
		return false
	}
	name := string(bytes.TrimRight(head[:100], "\x00"))
	return strings.HasSuffix(strings.ToLower(name), ".ovf") || name == "././@LongLink" || head[156] == 'x'
}

// Read reads the members of the tar and the OVF descriptor, and returns
// the appliance's disks with where their files lie. Errors wrap
// disk.ErrFormat (not a valid OVA), disk.ErrUnsupported (compressed,
// chunked or sparse disk files) or disk.ErrLimit.
func Read(r io.ReaderAt, size int64) (*Appliance, error) {
	members, err := list(r, size)
	if err != nil {
		return nil, err
	}
	var ovfs []member
	for _, m := range members {
		if strings.HasSuffix(strings.ToLower(m.name), ".ovf") {
			ovfs = append(ovfs, m)
		}
	}
	switch {
	case len(ovfs) == 0:
		return nil, fmt.Errorf("ova: %w: the tar holds no OVF descriptor (.ovf)", disk.ErrFormat)
	case len(ovfs) > 1:
		return nil, fmt.Errorf("ova: %w: the tar holds %d OVF descriptors (%s, %s...); an OVA has one", disk.ErrFormat, len(ovfs), disk.Quote(ovfs[0].name), disk.Quote(ovfs[1].name))
	}
	d := ovfs[0]
	if d.size > maxOVF {
		return nil, fmt.Errorf("ova: %w: the OVF descriptor is %d bytes (at most %d are read)", disk.ErrLimit, d.size, maxOVF)
	}
	text := make([]byte, d.size)
	if _, err := r.ReadAt(text, d.offset); err != nil && !(errors.Is(err, io.EOF) && len(text) == 0) {
		return nil, fmt.Errorf("ova: %w: reading the OVF descriptor: %w", disk.ErrFormat, err)
	}
	env, err := parseOVF(text)
	if err != nil {
		return nil, err
	}
	a := &Appliance{OVF: d.name}
	files := map[string]ovfFile{}
	for _, f := range env.References.Files {
		files[f.ID] = f
	}
	for i, dk := range env.DiskSection.Disks {
		f, ok := files[dk.FileRef]
		if !ok {
			return nil, fmt.Errorf("ova: %w: disk %d (%s) names the file %s, which the OVF's References do not list", disk.ErrFormat, i+1, disk.Quote(dk.ID), disk.Quote(dk.FileRef))
		}
		out := Disk{ID: dk.ID, File: f.Href, Format: dk.Format, Capacity: dk.Capacity, Offset: -1}
		if c := strings.TrimSpace(f.Compression); c != "" && c != "identity" {
			out.Size = -1
		}
		if f.ChunkSize != "" && f.ChunkSize != "0" {
			out.Size = -2
		}
		for _, m := range members {
			if m.name == f.Href {
				if m.sparse {
					return nil, fmt.Errorf("ova: %w: the file %s of disk %d is a sparse tar member", disk.ErrUnsupported, disk.Quote(f.Href), i+1)
				}
				out.Offset = m.offset
				if out.Size == 0 {
					out.Size = m.size
				}
				break
			}
		}
		a.Disks = append(a.Disks, out)
	}
	if len(a.Disks) == 0 {
		return nil, fmt.Errorf("ova: %w: the OVF descriptor lists no disk", disk.ErrFormat)
	}
	return a, nil
}

// Pick returns disk n (1 for the first the OVF lists, which 0 means too),
// checked: its file must be in the tar, uncompressed and in one piece.
func (a *Appliance) Pick(n int) (Disk, error) {
	if n == 0 {
		n = 1
	}
	if n < 0 || n > len(a.Disks) {
		return Disk{}, fmt.Errorf("ova: %w: there is no disk %d; the OVF lists %d: %s", disk.ErrFormat, n, len(a.Disks), a.names())
	}
	d := a.Disks[n-1]
	switch {
	case d.Size == -1:
		return d, fmt.Errorf("ova: %w: the file %s of disk %d is compressed in the OVA (ovf:compression); it cannot be read in place", disk.ErrUnsupported, disk.Quote(d.File), n)
	case d.Size == -2:
		return d, fmt.Errorf("ova: %w: the file %s of disk %d is split into chunks (ovf:chunkSize); it cannot be read in place", disk.ErrUnsupported, disk.Quote(d.File), n)
	case d.Offset < 0:
		return d, fmt.Errorf("ova: %w: the file %s of disk %d is not in the tar", disk.ErrFormat, disk.Quote(d.File), n)
	}
	return d, nil
}

// names lists the disks, for messages.
func (a *Appliance) names() string {
	var s []string
	for i, d := range a.Disks {
		s = append(s, fmt.Sprintf("%d %s", i+1, disk.Quote(d.File)))
	}
	return strings.Join(s, ", ")
}

type member struct {
	name         string
	offset, size int64
	sparse       bool
}

// list walks the tar's headers with archive/tar over a reader that knows
// its position, so that each member's data is found where it lies.
func list(r io.ReaderAt, size int64) ([]member, error) {
	cr := &countingReader{r: r, size: size}
	tr := tar.NewReader(cr)
	var out []member
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("ova: %w: reading the tar: %w", disk.ErrFormat, err)
		}
		if len(out) == maxMembers {
			return nil, fmt.Errorf("ova: %w: the tar has more than %d members", disk.ErrLimit, maxMembers)
		}
		if h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeGNUSparse {
			continue
		}
		m := member{name: h.Name, offset: cr.pos, size: h.Size, sparse: h.Typeflag == tar.TypeGNUSparse || h.PAXRecords["GNU.sparse.major"] != "" || h.PAXRecords["GNU.sparse.map"] != ""}
		if h.Size < 0 || m.offset > size || h.Size > size-m.offset {
			return nil, fmt.Errorf("ova: %w: the member %s (%d bytes at offset %d) runs past the end of the file (%d bytes)", disk.ErrFormat, disk.Quote(h.Name), h.Size, m.offset, size)
		}
		out = append(out, m)
	}
	return out, nil
}

// countingReader reads r sequentially and seeks within it, knowing its
// position (archive/tar skips member data by seeking when it can).
type countingReader struct {
	r    io.ReaderAt
	pos  int64
	size int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.pos >= c.size {
		return 0, io.EOF
	}
	if int64(len(p)) > c.size-c.pos {
		p = p[:c.size-c.pos]
	}
	n, err := c.r.ReadAt(p, c.pos)
	c.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (c *countingReader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += c.pos
	case io.SeekEnd:
		off += c.size
	}
	if off < 0 {
		return c.pos, fmt.Errorf("seek to a negative offset")
	}
	c.pos = off
	return off, nil
}

// The parts of an OVF envelope (DSP0243 sections 7 and 9) read here.
type envelope struct {
	References struct {
		Files []ovfFile `xml:"File"`
	} `xml:"References"`
	DiskSection struct {
		Disks []ovfDisk `xml:"Disk"`
	} `xml:"DiskSection"`
}

type ovfFile struct {
	ID          string `xml:"id,attr"`
	Href        string `xml:"href,attr"`
	Size        string `xml:"size,attr"`
	Compression string `xml:"compression,attr"`
	ChunkSize   string `xml:"chunkSize,attr"`
}

type ovfDisk struct {
	ID       string `xml:"diskId,attr"`
	FileRef  string `xml:"fileRef,attr"`
	Capacity string `xml:"capacity,attr"`
	Format   string `xml:"format,attr"`
}

// parseOVF decodes the descriptor; encoding/xml reads no external
// entities and expands none beyond the predefined ones.
func parseOVF(text []byte) (*envelope, error) {
	var env envelope
	dec := xml.NewDecoder(bytes.NewReader(text))
	dec.Strict = true
	if err := dec.Decode(&env); err != nil {
		return nil, fmt.Errorf("ova: %w: the OVF descriptor is not valid XML: %v", disk.ErrFormat, err)
	}
	for _, f := range env.References.Files {
		if f.Size != "" {
			if _, err := strconv.ParseUint(f.Size, 10, 63); err != nil {
				return nil, fmt.Errorf("ova: %w: the file %s has the size %s", disk.ErrFormat, disk.Quote(f.Href), disk.Quote(f.Size))
			}
		}
	}
	return &env, nil
}
