// Package genvm generates virtual machine disk images: blank ones, or ones
// based on an existing image that is verified, converted and resized. It is
// the library behind the gen-vm-image command, for any Go program that
// embeds it. Everything is done by our own code: no external program runs.
//
// The pipeline for one image, each step a function below:
//
//	validate -> verify the input's checksum -> open the input (format from
//	content) -> create the output under a temporary name -> convert ->
//	close -> check -> fsync -> rename into place
//
// A failure at any step leaves nothing behind and never touches an existing
// image.
package genvm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/ucphhpc/gen-vm-image-go/arch"
	"github.com/ucphhpc/gen-vm-image-go/checksum"
	"github.com/ucphhpc/gen-vm-image-go/convert"
	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/inspect"
	"github.com/ucphhpc/gen-vm-image-go/internal/safefile"
	"github.com/ucphhpc/gen-vm-image-go/output"
	"github.com/ucphhpc/gen-vm-image-go/size"

	// Every format registers itself: those we read, write or only
	// recognise.
	_ "github.com/ucphhpc/gen-vm-image-go/disk/all"
)

// Spec describes one image to generate.
type Spec struct {
	Name    string
	Size    string // as qemu-img reads sizes: 20G, 512M, 1048576
	Version string // optional; the file is NAME-VERSION.FORMAT
	Format  string // output format; default qcow2
	Input   *Input // nil for a blank image
	// OutputDirectory defaults to DefaultOutputDirectory; it is created.
	OutputDirectory string
	// Overwrite replaces an existing image; without it an existing image is
	// kept and Generate succeeds without doing anything.
	Overwrite bool
	// AllowShrink permits a Size below the input's virtual size, which
	// discards the data beyond it.
	AllowShrink bool
	// CacheDir holds downloaded inputs; "" means fetch.DefaultCacheDir()
	// ($GVI_CACHE_DIR, else the user's cache directory).
	CacheDir string
}

// Input is the image a generated image is based on.
type Input struct {
	Path     string   // a local file, or
	URL      string   // an http(s) URL, downloaded into the cache (see package fetch)
	Mirrors  []string // more URLs of the same file, tried in order after URL
	Format   string   // optional; must agree with the content when given
	Checksum *Checksum
}

// Checksum is the expected digest of the input file as published: a
// literal Value, or the one a checksum File lists for the input's file name.
type Checksum struct {
	Type       string // a hashlib name: sha256, sha512, ...; optional with File
	Value      string // hex
	File       string // URL or path of a checksum (SUMS) file, instead of Value
	Signature  string // URL or path of File's detached OpenPGP signature
	Key        string // URL or path of the OpenPGP key that signs File (clear-signed when no Signature)
	BufferSize int    // read buffer; 0 means 65536
	ReadBytes  int64  // hash only the first ReadBytes bytes; 0 means all
}

// Result says what Generate did. It is returned on failure too, with the
// messages gathered until then.
type Result struct {
	Path     string   // the image's path
	Created  bool     // false when an existing image was kept
	Messages []string // what a verbose run prints
}

// Event reports progress of a long step.
type Event struct {
	Image string // the output file name
	Stage string // "download", "verify", "convert"
	Done  int64
	Total int64
}

type options struct {
	progress func(Event)
	noSync   bool
	// Download limits (fetch.WithLimits); nil: fetch's defaults.
	downloadLimits *[2]int64
	// afterVerify, for tests, runs between an input's checksum and its
	// use.
	afterVerify func(path string)
}

// Option tunes Generate and Build.
type Option func(*options)

// WithProgress has fn called with progress events. fn must be quick; it is
// called from the goroutine doing the work.
func WithProgress(fn func(Event)) Option { return func(o *options) { o.progress = fn } }

// WithoutSync skips the fsync that makes each image durable before it is
// renamed into place, as qemu-img convert does by default (its "unsafe"
// cache mode). It saves the time the disk takes to write the image, but
// after a crash or power loss an image may exist under its final name with
// data missing: for builds that are thrown away on a crash anyway.
func WithoutSync() Option { return func(o *options) { o.noSync = true } }

// WithDownloadLimits bounds every download: at most maxSize bytes (0: no
// limit; default 128 GiB), and at least minRate bytes per second over each
// minute (0: no minimum; default 1 KiB/s). A slower download is resumed a
// few times, then given up.
func WithDownloadLimits(maxSize, minRate int64) Option {
	return func(o *options) { o.downloadLimits = &[2]int64{maxSize, minRate} }
}

func (o *options) emit(e Event) {
	if o.progress != nil {
		o.progress(e)
	}
}

// Generate makes the image spec describes.
func Generate(ctx context.Context, spec Spec, opts ...Option) (*Result, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	res := &Result{}
	err := generate(ctx, spec, &o, res)
	return res, err
}

func generate(ctx context.Context, spec Spec, o *options, res *Result) error {
	say := func(format string, args ...any) { res.Messages = append(res.Messages, sprintf(format, args...)) }

	format := spec.Format
	if format == "" {
		format = DefaultFormat
	}
	virtualSize, err := validateSpec(spec, format)
	if err != nil {
		return err
	}
	res.Path = OutputPath(spec.OutputDirectory, spec.Name, spec.Version, format)

	if _, err := os.Lstat(res.Path); err == nil {
		say("The output image: %s already exists", res.Path)
		if !spec.Overwrite {
			say("Use the --overwrite flag to overwrite the existing image")
			return nil
		}
		say("Overwriting the existing image: %s", res.Path)
	}
	dir := filepath.Dir(res.Path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return newError(CodeCreateFailed, err, "Failed to create path: %s - error: %v", dir, err)
	}
	// What runs that were killed left behind goes before we add our own.
	removed, _ := output.CleanAbandoned(dir)
	for _, name := range removed {
		say("Removed %s, a temporary file left by a run that was killed", name)
	}

	var src *openedInput
	if spec.Input != nil {
		src, err = openInput(ctx, spec.Input, spec.CacheDir, filepath.Base(res.Path), o, say)
		if err != nil {
			return err
		}
		defer src.close()
		inSize := src.image.Size()
		if virtualSize < inSize && !spec.AllowShrink {
			return newError(CodeResize, disk.ErrShrink,
				"Refusing to shrink %s: the requested size %s (%d bytes) is smaller than the input's virtual size %s (%d bytes), which would discard data; use --allow-shrink (allow_shrink: true) if that is really wanted",
				res.Path, size.Format(virtualSize), virtualSize, size.Format(inSize), inSize)
		}
		if virtualSize < inSize {
			say("Shrinking from %d to %d bytes as allowed: data beyond %d bytes is discarded", inSize, virtualSize, virtualSize)
		}
	}

	created, err := writeImage(ctx, res.Path, format, virtualSize, src, spec.Overwrite, o, say)
	if err != nil || !created {
		return err
	}
	res.Created = true
	abs, _ := filepath.Abs(res.Path)
	say("Generated image at: %s", abs)
	return nil
}

// validateSpec checks what can be checked before touching any file and
// returns the virtual size in bytes.
func validateSpec(spec Spec, format string) (int64, error) {
	if err := arch.CheckFileComponent("name", spec.Name); err != nil {
		return 0, newError(CodeInvalidAttribute, err, "Invalid image name: %v", err)
	}
	if err := arch.CheckFileComponent("version", spec.Version); err != nil {
		return 0, newError(CodeInvalidAttribute, err, "Invalid image version: %v", err)
	}
	if spec.Size == "" {
		return 0, newError(CodeMissingAttribute, nil, "Missing attribute: size in image %s", spec.Name)
	}
	n, err := size.Parse(spec.Size)
	if err != nil {
		return 0, newError(CodeInvalidAttribute, err, "Invalid size: %v", err)
	}
	// A disk is made of 512-byte sectors: qemu-img create rounds every
	// size up to one, and so do we, so that outputs match the reference's.
	if n > math.MaxInt64-511 {
		return 0, newError(CodeInvalidAttribute, nil, "Invalid size: %q is too large", spec.Size)
	}
	n = (n + 511) &^ 511
	if err := checkWritable(format); err != nil {
		return 0, err
	}
	if in := spec.Input; in != nil {
		if in.Path == "" && in.URL == "" {
			return 0, newError(CodeMissingAttribute, nil, "Missing attribute: the input needs a path or a url")
		}
		if in.Path != "" && in.URL != "" {
			return 0, newError(CodeInvalidAttribute, nil, "Both a path and a url are given for the input; only one can be")
		}
		if len(in.Mirrors) > 0 && in.URL == "" {
			return 0, newError(CodeInvalidAttribute, nil, "Mirrors are given for the input but no url")
		}
		if c := in.Checksum; c != nil {
			if err := validateChecksumFile(c); err != nil {
				return 0, err
			}
			if c.Value != "" && c.Type == "" {
				return 0, newError(CodeMissingAttribute, nil, "Missing attribute: input_checksum_type in %s", c.Value)
			}
			if c.Type != "" && c.Value == "" && c.File == "" {
				return 0, newError(CodeMissingAttribute, nil, "Missing attribute: input_checksum for checksum type %s", c.Type)
			}
			if c.Type != "" {
				if _, err := checksum.New(c.Type); err != nil {
					return 0, newError(CodeInvalidAttribute, err, "Invalid checksum type: %v", err)
				}
			}
			if c.BufferSize < 0 || c.ReadBytes < 0 {
				return 0, newError(CodeInvalidAttribute, nil, "Invalid checksum buffer size %d or read bytes %d: must be positive", c.BufferSize, c.ReadBytes)
			}
		}
	}
	return n, nil
}

// imageMode is the permission of the images we write: what qemu-img's 0666
// gives under the usual umask 022 (Chmod does not apply the umask).
const imageMode = 0o644

// checkWritable refuses output formats we cannot write, naming those we can.
func checkWritable(format string) error {
	if f, ok := disk.Lookup(format); !ok || f.Create == nil {
		return newError(CodeInvalidAttribute, nil,
			"Invalid output format %q: this version writes %s", format, strings.Join(disk.WritableFormats(), ", "))
	}
	return nil
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// writeImage creates the image under a temporary name beside its final one,
// fills it, checks it and puts it in place. On failure the temporary file
// is removed and an existing image at path is untouched; without overwrite
// an image that appeared at path meanwhile (another run) is kept, and
// created is false.
func writeImage(ctx context.Context, path, format string, virtualSize int64, src *openedInput, overwrite bool, o *options, say func(string, ...any)) (created bool, err error) {
	f, _ := disk.Lookup(format)
	base := filepath.Base(path)
	tmp, err := output.Create(path, imageMode)
	if err != nil {
		return false, newError(CodeCreateFailed, err, "Failed to create path: %s - error: %v", path, err)
	}
	published := false
	defer func() {
		if !published {
			tmp.Abort()
		}
	}()

	var createOpt disk.CreateOptions
	w, err := f.Create(tmp.File, virtualSize, createOpt)
	if err != nil {
		return false, newError(CodeCreateFailed, err, "Failed to create path: %s - error: %v", path, err)
	}
	if src != nil {
		wb := startWriteBehind(tmp.File, !o.noSync)
		stats, err := convert.Copy(ctx, w, src.image, convert.Options{
			Length:    virtualSize,
			ZeroBlock: f.BlockSize(createOpt),
			Progress: func(p convert.Progress) {
				wb.progress(p.Done)
				o.emit(Event{Image: base, Stage: "convert", Done: p.Done, Total: p.Total})
			},
		})
		wb.stop()
		if err != nil {
			w.Close()
			if ctx.Err() != nil {
				return false, newError(CodeCreateFailed, err, "Interrupted while converting %s into %s: %v", src.path, path, ctx.Err())
			}
			return false, newError(CodeCreateFailed, err, "Failed to create path: %s - error: converting %s: %v", path, src.path, err)
		}
		say("Converted %s (%s) to %s: %d bytes of data copied, %d bytes of zeros skipped", src.path, src.format, format, stats.BytesWritten, stats.ZeroSkipped)
	}
	if err := w.Close(); err != nil {
		return false, newError(CodeCreateFailed, err, "Failed to create path: %s - error: %v", path, err)
	}
	if f.Check != nil {
		report, err := f.CheckFile(tmp.File)
		if err != nil {
			return false, newError(CodeCheck, err, "Failed to check path: %s - error: %v", path, err)
		}
		if !report.OK() {
			return false, newError(CodeCheck, nil, "Failed to check path: %s - %d errors, %d corruptions, %d leaks: %s",
				path, report.Errors, report.Corruptions, report.Leaks, strings.Join(report.Problems, "; "))
		}
		say("Checked %s: no errors were found on the image", path)
	}
	if err := ctx.Err(); err != nil {
		return false, newError(CodeCreateFailed, err, "Interrupted before %s was put in place: %v", path, err)
	}
	published = true
	err = tmp.Publish(overwrite, !o.noSync)
	if errors.Is(err, output.ErrExists) {
		say("The output image: %s was created by another run while this one worked; it is kept (use --overwrite to replace it)", path)
		return false, nil
	}
	if err != nil {
		return false, newError(CodeCreateFailed, err, "Failed to create path: %s - error: %v", path, err)
	}
	return true, nil
}

// openedInput is an input image ready to be read.
type openedInput struct {
	path   string
	format string
	file   *os.File
	image  disk.Image
}

func (in *openedInput) close() {
	in.image.Close()
	in.file.Close()
}

// openInput resolves, verifies and opens the input image: a download is
// fetched (verified while it downloads) into the cache at cacheDir; image
// names the output in progress events.
func openInput(ctx context.Context, in *Input, cacheDir, image string, o *options, say func(string, ...any)) (*openedInput, error) {
	f, fileSize, err := resolveInput(ctx, in, cacheDir, image, o, say)
	if err != nil {
		return nil, err
	}
	path := f.Name()
	if fileSize == 0 {
		f.Close()
		return nil, newError(CodeLoadFailed, nil, "Failed to load path: %s - error: the file is empty (0 bytes): it is not a disk image", path)
	}
	format, report, err := detectFormat(f, fileSize, in.Format)
	if err != nil {
		f.Close()
		return nil, err
	}
	for _, note := range report.Notes {
		say("Inspected %s: %s", path, note)
	}
	fmtDef, _ := disk.Lookup(format)
	if fmtDef.Open == nil {
		f.Close()
		return nil, newError(CodeLoadFailed, nil, "Failed to load path: %s - error: it is a %s image, which this version cannot read yet (it reads %s); convert it to one of those first", path, format, strings.Join(disk.ReadableFormats(), ", "))
	}
	img, err := fmtDef.Open(f, fileSize, disk.OpenOptions{})
	if err != nil {
		f.Close()
		return nil, newError(CodeLoadFailed, err, "Failed to load path: %s - error: %v", path, err)
	}
	say("Input %s is a %s image with a virtual size of %d bytes", path, format, img.Size())
	return &openedInput{path: path, format: format, file: f, image: img}, nil
}

// detectFormat names the input's format from its content and applies the
// safety policy (package inspect) before anything opens the image: a
// declared format that contradicts the content is an invalid attribute
// (code 5); a polyglot, an image that refers to other files, an encrypted
// one, one with unknown features or absurd geometry fails to load (code 2).
func detectFormat(f *os.File, fileSize int64, declared string) (string, inspect.Report, error) {
	rep, err := inspect.InspectAt(f, fileSize, declared, inspect.Policy{})
	switch {
	case err == nil:
		return rep.Format, rep, nil
	case errors.Is(err, inspect.ErrMismatch):
		return "", rep, newError(CodeInvalidAttribute, err, "Invalid input format for %s: %v", f.Name(), err)
	default:
		return "", rep, newError(CodeLoadFailed, err, "Failed to load path: %s - error: refusing the input image: %v", f.Name(), err)
	}
}

// resolveInput opens the input file: the local path, verified, or the
// download's verified copy in the cache. The file is opened once: the
// checksum is computed on the descriptor that is then inspected and
// converted, so that nothing can take the verified file's place.
func resolveInput(ctx context.Context, in *Input, cacheDir, image string, o *options, say func(string, ...any)) (*os.File, int64, error) {
	if in.URL != "" {
		return fetchInput(ctx, in, cacheDir, image, o, say)
	}
	path := in.Path
	f, err := safefile.OpenInput(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, 0, newError(CodePathNotFound, err, "Path not found: %s - error: the defined input path does not exist", path)
	case errors.Is(err, safefile.ErrNotRegular):
		return nil, 0, newError(CodeLoadFailed, err, "Failed to load path: %s - error: not a regular file", path)
	case err != nil:
		return nil, 0, newError(CodeLoadFailed, err, "Failed to load path: %s - error: %v", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, newError(CodeLoadFailed, err, "Failed to load path: %s - error: %v", path, err)
	}
	if c := in.Checksum; c != nil && (c.Value != "" || c.File != "") {
		if err := verifyChecksum(ctx, f, st.Size(), path, c, say); err != nil {
			f.Close()
			return nil, 0, err
		}
		if o.afterVerify != nil {
			o.afterVerify(path)
		}
	}
	return f, st.Size(), nil
}

// verifyChecksum hashes the open input file and compares the digest with
// the expected value, or with the one its checksum file lists.
func verifyChecksum(ctx context.Context, f *os.File, size int64, path string, c *Checksum, say func(string, ...any)) error {
	if c.File != "" {
		listed, err := lookupChecksumFile(ctx, c, path, say)
		if err != nil {
			return err
		}
		c = listed
	}
	got, err := checksum.Digest(ctx, io.NewSectionReader(f, 0, size), c.Type, c.BufferSize, c.ReadBytes)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return newError(CodeChecksum, err, "Interrupted while calculating the checksum of %s", path)
		}
		return newError(CodeChecksum, err, "Failed to calculate the checksum of %s: %v", path, err)
	}
	if !checksum.Equal(c.Value, got) {
		return newError(CodeChecksum, nil,
			"The checksum of the input image: %s does not match the expected checksum: %s (%s of %s)", got, strings.TrimSpace(c.Value), c.Type, path)
	}
	say("The calculated checksum: %s matches the defined checksum: %s", got, strings.TrimSpace(c.Value))
	return nil
}
