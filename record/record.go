// Package record is what an output directory says about the images in it:
// SHA256SUMS (GNU format, names relative to the directory, sorted, so that
// `sha256sum -c SHA256SUMS` passes there and the same images give the same
// file) and a JSON manifest, gen-vm-image.json, with what each image was
// built from (its spec's digest, its input and that input's digest), so
// that a later run can tell an up-to-date image from a stale one.
//
// Both files are rewritten together under a lock on the directory and put
// in place by rename: a reader never sees half a file, and two runs that
// finish at once both find their entries in the result.
package record

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ucphhpc/gen-vm-image-go/internal/filelock"
	"github.com/ucphhpc/gen-vm-image-go/internal/safefile"
)

// The files of the record, in the output directory.
const (
	ManifestName = "gen-vm-image.json"
	SumsName     = "SHA256SUMS"
	// lockName is held while the record is read, changed and rewritten.
	lockName = ".gen-vm-image.lock"
)

// ManifestVersion is the manifest's "version": raised when a field changes
// meaning, so that an older or newer manifest is read as no record at all
// (every image then looks unrecorded) rather than misread.
const ManifestVersion = 1

// maxManifestSize bounds what we read back: an entry is under a KiB, and
// nobody keeps a hundred thousand images in one directory.
const maxManifestSize = 64 << 20

// Manifest is gen-vm-image.json.
type Manifest struct {
	Version int     `json:"version"`
	Images  []Image `json:"images"` // sorted by File
}

// Image is one image in the directory, as it was built.
type Image struct {
	Key         string            `json:"key"`  // the architecture's key; the name for single
	File        string            `json:"file"` // the name in the directory
	Format      string            `json:"format"`
	Options     map[string]string `json:"options,omitempty"` // the format's -o options
	Compress    bool              `json:"compress,omitempty"`
	VirtualSize int64             `json:"virtual_size"`
	FileSize    int64             `json:"file_size"`
	SHA256      string            `json:"sha256"`
	Input       *Input            `json:"input,omitempty"` // nil: a blank image
	ToolVersion string            `json:"tool_version"`
	// SpecDigest is the SHA-256 of everything in the image's spec that
	// decides its bytes (genvm's SpecDigest): another digest means another
	// image.
	SpecDigest string  `json:"spec_digest"`
	Pushed     *Pushed `json:"pushed,omitempty"`
}

// Input is what an image was built from.
type Input struct {
	Path string `json:"path,omitempty"`
	URL  string `json:"url,omitempty"` // the URL it came from (a mirror, maybe)
	OCI  string `json:"oci,omitempty"`
	// SHA256 is the digest of the input's bytes as given (as published,
	// for a compressed download).
	SHA256 string `json:"sha256,omitempty"`
	Size   int64  `json:"size"`
	// ModTime (RFC 3339, nanoseconds) is a path input's: with Size, it
	// tells a later run that the file is unchanged without reading it.
	ModTime string `json:"mtime,omitempty"`
	// Checksum is what the input was verified against, ALGORITHM:HEX; ""
	// when it was not.
	Checksum string `json:"checksum,omitempty"`
}

// Pushed is where the image was pushed, with BuildSpec.Push.
type Pushed struct {
	Reference string `json:"reference"`
	Digest    string `json:"digest"`
}

// Lookup returns the entry for file, or nil.
func (m *Manifest) Lookup(file string) *Image {
	if m == nil {
		return nil
	}
	i, ok := slices.BinarySearchFunc(m.Images, file, func(im Image, f string) int { return strings.Compare(im.File, f) })
	if !ok {
		return nil
	}
	return &m.Images[i]
}

// Read returns dir's manifest; an empty one when there is none (or one of
// another version). It takes no lock: the manifest is replaced by rename,
// so what it reads is whole.
func Read(dir string) (*Manifest, error) {
	data, err := readSmall(filepath.Join(dir, ManifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return &Manifest{Version: ManifestVersion}, nil
	}
	if err != nil {
		return nil, err
	}
	return parse(data)
}

func parse(data []byte) (*Manifest, error) {
	var probe struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("%s: %w", ManifestName, err)
	}
	if probe.Version != ManifestVersion {
		return &Manifest{Version: ManifestVersion}, nil
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", ManifestName, err)
	}
	m.sort()
	return &m, nil
}

// readSmall reads our manifest; a link, a FIFO or a device planted in its
// place is an error (no record), never followed or waited on.
func readSmall(name string) ([]byte, error) {
	f, err := safefile.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxManifestSize {
		return nil, fmt.Errorf("%s is larger than %d bytes: not ours", name, maxManifestSize)
	}
	return data, nil
}

func (m *Manifest) sort() {
	slices.SortFunc(m.Images, func(a, b Image) int { return strings.Compare(a.File, b.File) })
	m.Images = slices.CompactFunc(m.Images, func(a, b Image) bool { return a.File == b.File })
}

// Update puts images into dir's record (replacing the entries of the same
// files), drops the entries of the files in drop and of files that are no
// longer there, and rewrites the manifest and SHA256SUMS. It waits for
// another run's update to finish first (lock says how runs take turns).
// durable syncs the files before they are renamed into place.
func Update(ctx context.Context, dir string, images []Image, drop []string, durable bool, lock filelock.Mode) error {
	unlock, err := lockDir(ctx, dir, lock)
	if err != nil {
		return fmt.Errorf("locking the record in %s: %w", dir, err)
	}
	defer unlock()
	m, err := Read(dir)
	if err != nil {
		// A manifest we cannot read is replaced: the record is rebuilt
		// from what this run knows rather than blocking every run.
		m = &Manifest{Version: ManifestVersion}
	}
	for _, im := range images {
		if !validName(im.File) {
			return fmt.Errorf("record: %q is not a file name", im.File)
		}
		drop = append(drop, im.File)
	}
	m.Images = slices.DeleteFunc(m.Images, func(im Image) bool {
		if slices.Contains(drop, im.File) || !validName(im.File) {
			return true
		}
		st, err := os.Lstat(filepath.Join(dir, im.File))
		return err != nil || !st.Mode().IsRegular() || st.Size() != im.FileSize
	})
	m.Images = append(m.Images, images...)
	m.sort()
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, ManifestName), append(manifest, '\n'), durable); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, SumsName), m.Sums(), durable)
}

// Sums is SHA256SUMS for m: "HEX  NAME" lines, sorted by name, as
// sha256sum prints them.
func (m *Manifest) Sums() []byte {
	var b bytes.Buffer
	for _, im := range m.Images {
		fmt.Fprintf(&b, "%s  %s\n", im.SHA256, im.File)
	}
	return b.Bytes()
}

// validName: a plain name in the directory that sha256sum reads back as
// written (no separator, no newline or backslash it would escape).
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\\\n\r\x00") && filepath.Base(name) == name
}

// writeFile replaces name by data through a temporary file and a rename.
// The temporary name is fixed: the caller holds the directory's lock.
func writeFile(name string, data []byte, durable bool) error {
	tmp := filepath.Join(filepath.Dir(name), "."+filepath.Base(name)+".new")
	os.Remove(tmp) // a run killed between write and rename, or a planted link
	f, err := safefile.Create(tmp, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
