package genvm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ucphhpc/gen-vm-image-go/checksum"
	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/fetch"
	"github.com/ucphhpc/gen-vm-image-go/internal/safefile"
	"github.com/ucphhpc/gen-vm-image-go/record"
)

// The record (package record) is written by Generate and Build alike: each
// image they create is hashed right after it is written (read back while
// it is in the page cache, its holes skipped) and put into its directory's
// SHA256SUMS and gen-vm-image.json with what it was built from.

// specIdentity is what of a spec decides the image's bytes: another value
// is another image. Mirrors, buffer sizes, signatures and Overwrite do not
// change the bytes and are left out.
type specIdentity struct {
	Name        string            `json:"name"`
	Version     string            `json:"version,omitempty"`
	Format      string            `json:"format"`
	VirtualSize int64             `json:"virtual_size"`
	Options     map[string]string `json:"options,omitempty"`
	Compress    bool              `json:"compress,omitempty"`
	Input       *inputIdentity    `json:"input,omitempty"`
}

type inputIdentity struct {
	Path           string `json:"path,omitempty"`
	URL            string `json:"url,omitempty"`
	OCI            string `json:"oci,omitempty"`
	Format         string `json:"format,omitempty"`
	ChecksumType   string `json:"checksum_type,omitempty"`
	ChecksumValue  string `json:"checksum_value,omitempty"`
	ChecksumFile   string `json:"checksum_file,omitempty"`
	ChecksumLength int64  `json:"checksum_read_bytes,omitempty"`
	Disk           int    `json:"ova_disk,omitempty"` // an OVA's disk: another disk is another image
}

// specDigest is the record's spec_digest for spec, once its format and
// virtual size are settled.
func specDigest(spec Spec, format string, virtualSize int64) string {
	id := specIdentity{Name: spec.Name, Version: spec.Version, Format: format, VirtualSize: virtualSize,
		Options: spec.FormatOptions, Compress: spec.Compress}
	if len(id.Options) == 0 {
		id.Options = nil
	}
	if in := spec.Input; in != nil {
		id.Input = &inputIdentity{Path: in.Path, URL: in.URL, OCI: in.OCI, Format: in.Format, Disk: in.Disk}
		if c := in.Checksum; c != nil {
			id.Input.ChecksumType, id.Input.ChecksumValue = strings.ToLower(c.Type), strings.ToLower(c.Value)
			id.Input.ChecksumFile, id.Input.ChecksumLength = c.File, c.ReadBytes
		}
	}
	data, _ := json.Marshal(id) // map keys sorted: canonical
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// written is what writeImage learnt of the file it put in place; sha256
// is "" when it could not be hashed (the image is then not recorded).
type written struct {
	sha256   string
	fileSize int64
}

// pendingHash is the digest of a file being computed by a goroutine of
// its own, on a descriptor of its own (the writer's is closed when the
// file is put in place).
type pendingHash struct {
	done   chan struct{}
	cancel context.CancelFunc
	sum    string
	size   int64
	err    error
}

func startHash(ctx context.Context, name string) *pendingHash {
	ctx, cancel := context.WithCancel(ctx)
	h := &pendingHash{done: make(chan struct{}), cancel: cancel}
	f, err := os.Open(name)
	if err != nil {
		h.err = err
		close(h.done)
		return h
	}
	go func() {
		defer close(h.done)
		defer f.Close()
		h.sum, h.size, h.err = record.HashFile(ctx, f)
	}()
	return h
}

// wait waits for the digest and puts it in out; a writer that gave up
// calls it too, and then the hashing stops at once.
func (h *pendingHash) wait(out *written) error {
	<-h.done
	h.cancel()
	if h.err != nil {
		return h.err
	}
	out.sha256, out.fileSize = h.sum, h.size
	return nil
}

// recordEntry is the record of an image generate created.
func recordEntry(key string, spec Spec, f disk.Format, opt disk.CreateOptions, virtualSize int64, w written, in *record.Input) record.Image {
	var options map[string]string
	if len(opt.Options) > 0 {
		options = opt.Options
	}
	return record.Image{
		Key: key, File: filepath.Base(OutputPath(spec.OutputDirectory, spec.Name, spec.Version, f.Name)),
		Format: f.Name, Options: options, Compress: opt.Compress,
		VirtualSize: virtualSize, FileSize: w.fileSize, SHA256: w.sha256,
		Input: in, ToolVersion: Version, SpecDigest: specDigest(spec, f.Name, virtualSize),
	}
}

// inputNote gathers what the record says of an image's input as the
// input is resolved.
type inputNote struct {
	rec record.Input
	// sha256 is the input's whole-file SHA-256 when its checksum was one.
	sha256 string

	// path is a local input's record, made by the first image of a build
	// that needs it.
	mu   sync.Mutex
	path *record.Input
}

func (n *inputNote) noteVerified(want *checksum.Expected) {
	if n == nil || want == nil {
		return
	}
	n.rec.Checksum = want.Algorithm + ":" + want.Digest
	if want.Algorithm == "sha256" && want.ReadBytes == 0 {
		n.sha256 = want.Digest
	}
}

func (n *inputNote) noteDownload(res *fetch.Result) {
	if n == nil {
		return
	}
	n.rec.URL, n.rec.SHA256, n.rec.Size = res.URL, res.SHA256, res.Size
	if res.Algorithm != "" {
		n.rec.Checksum = res.Algorithm + ":" + res.Digest
	}
}

// recordCreated puts the image just created for t into its directory's
// record.
func recordCreated(ctx context.Context, t *target, out written, o *options, res *Result) error {
	spec := t.spec
	var in *record.Input
	if spec.Input != nil && o.input != nil {
		n := o.input
		r := n.rec
		in = &r
		if spec.Input.Path != "" {
			n.mu.Lock()
			if n.path == nil {
				if err := pathInputRecord(ctx, in, spec.Input.Path, n.sha256); err != nil {
					res.Messages = append(res.Messages, sprintf("The record holds no digest of the input %s: %v", spec.Input.Path, err))
				}
				n.path = in
			}
			in = n.path
			n.mu.Unlock()
		}
	}
	key := o.key
	if key == "" {
		key = spec.Name
	}
	if out.sha256 == "" {
		return nil // said by writeImage
	}
	e := recordEntry(key, spec, t.format, t.createOpt, t.virtualSize, out, in)
	res.rec = &e
	return writeRecord(ctx, filepath.Dir(res.Path), o, e)
}

// pathInputRecord describes a local input as the record keeps it: its
// size and time, so that a later run trusts it unchanged without reading
// it, and its digest (the verified one, when it was a whole-file SHA-256,
// else read now, from the page cache the conversion left warm).
func pathInputRecord(ctx context.Context, in *record.Input, path, verified string) error {
	f, err := safefile.OpenInput(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	in.Path, in.Size, in.ModTime = path, st.Size(), st.ModTime().UTC().Format(time.RFC3339Nano)
	if verified != "" {
		in.SHA256 = verified
		return nil
	}
	in.SHA256, _, err = record.HashFile(ctx, f)
	return err
}

// forgetRecorded takes file out of dir's record, when it is in it.
func forgetRecorded(ctx context.Context, dir, file string, o *options) error {
	m, err := record.Read(dir)
	if err != nil || m.Lookup(file) == nil {
		return nil
	}
	if err := record.Update(ctx, dir, nil, []string{file}, !o.noSync, o.lockMode); err != nil {
		return newError(CodeCreateFailed, err, "Failed to write the record (%s, %s) in %s: %v", record.SumsName, record.ManifestName, dir, err)
	}
	return nil
}

// recordPushed adds where the image of res was pushed to its record
// entry: the one it was just created with, else the one already there
// (an image kept).
func recordPushed(ctx context.Context, o *options, res *Result, p *Pushed) error {
	if p == nil {
		return nil
	}
	dir := filepath.Dir(res.Path)
	e := res.rec
	if e == nil {
		m, err := record.Read(dir)
		if err != nil {
			return nil
		}
		if e = m.Lookup(filepath.Base(res.Path)); e == nil {
			return nil // not ours to describe
		}
	}
	e.Pushed = &record.Pushed{Reference: p.Reference, Digest: p.Digest}
	return writeRecord(ctx, dir, o, *e)
}

// writeRecord puts entries into the record of dir.
func writeRecord(ctx context.Context, dir string, o *options, entries ...record.Image) error {
	if err := record.Update(ctx, dir, entries, nil, !o.noSync, o.lockMode); err != nil {
		return newError(CodeCreateFailed, err, "Failed to write the record (%s, %s) in %s: %v", record.SumsName, record.ManifestName, dir, err)
	}
	return nil
}
