// Package genvm generates virtual machine disk images: blank ones, or ones
// based on an existing image (a file, a download, a KubeVirt containerDisk
// in an OCI registry) that is verified, converted and resized, and pushes
// images to registries as containerDisks. It is the library behind the
// gen-vm-image command, for any Go program that embeds it. Everything is
// done by our own code: no external program runs.
//
// The pipeline for one image, each step a function below:
//
//	validate -> verify the input's checksum -> open the input (format from
//	content) -> create the output under a temporary name -> convert ->
//	close -> check -> fsync -> rename into place
//
// A failure at any step leaves nothing behind and never touches an existing
// image.
//
// # Specs and options
//
// Generate, Build, Convert and Push each take a spec and options, by one
// rule. The spec (Spec, BuildSpec, ConvertSpec, PushSpec) says what to
// make: which images, their names, versions, sizes and formats, their
// inputs and how those are verified, where they go (a directory, a
// registry reference, the platform and timestamp a pushed image declares),
// and whether an existing image may be replaced (Overwrite, or Update for
// the stale ones) or an input cut short (AllowShrink) — everything that
// decides what ends up on disk or in a registry. Options (WithProgress,
// WithoutSync, WithMaxDownloadSize, WithMinDownloadRate, WithCacheDir,
// WithFailFast, WithJobs, WithoutSpaceCheck, WithFreeSpace,
// WithInsecureRegistry, WithRegistryTransport) say how the run goes: what
// it reports, how durably and how fast it writes, where downloads are
// kept, when a build gives up (a failure; not enough space), how many
// images it builds at once, how registries are reached. An option never
// changes what a successful run writes; an option an entry point has no
// use for is ignored.
//
// # The record
//
// Generate and Build record each image they create in its directory's
// SHA256SUMS and gen-vm-image.json (package record): its digest, and what
// it was built from. Plan reads that record to say, before anything is
// built, what a Build would do with each image: build, keep, rebuild (and
// why) or leave it as up to date (BuildSpec.Update), and how much space
// the images to build need. The same spec and input bytes always give the
// same file: no clock, random number or scheduling order reaches one.
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
	"github.com/ucphhpc/gen-vm-image-go/internal/location"
	"github.com/ucphhpc/gen-vm-image-go/internal/safefile"
	"github.com/ucphhpc/gen-vm-image-go/output"
	"github.com/ucphhpc/gen-vm-image-go/publish/oci"
	"github.com/ucphhpc/gen-vm-image-go/record"
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
	Format  string // output format; default arch.DefaultFormat
	Input   *Input // nil for a blank image
	// OutputDirectory defaults to DefaultOutputDirectory; it is created.
	OutputDirectory string
	// Overwrite replaces an existing image; without it an existing image is
	// kept and Generate succeeds without doing anything.
	Overwrite bool
	// AllowShrink permits a Size below the input's virtual size, which
	// discards the data beyond it.
	AllowShrink bool
	// FormatOptions are the output format's own options, as qemu-img -o
	// spells them (cluster_size=2M, subformat=fixed); see disk.Format.Options.
	FormatOptions map[string]string
	// Compress stores the data compressed (qemu-img convert -c), in the
	// formats that can.
	Compress bool
}

// Input is the image a generated image is based on.
type Input struct {
	Path    string   // a local file, or
	URL     string   // an http(s) URL, downloaded into the cache (see package fetch), or
	Mirrors []string // more URLs of the same file, tried in order after URL
	// OCI is a KubeVirt containerDisk in a registry,
	// REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:DIGEST (the
	// oci:// prefix may be kept): its disk is taken out of the layer as it
	// downloads, verified against the layer's digest and cached by it.
	OCI      string
	Format   string         // optional; must agree with the content when given
	Checksum *checksum.Spec // nil: the input is not verified (beyond an OCI layer's digest)
	// Disk picks the disk of an OVA appliance: 1 for the first its OVF
	// lists (0 means that too), 2 for the second, ... Only for OVA inputs.
	Disk int
}

// NewInput is the input a command line or a request names with one string:
// a download when it is an http or https URL, a containerDisk when it is
// an oci:// reference, else a local path.
func NewInput(s string) *Input {
	switch {
	case location.IsURL(s):
		return &Input{URL: s}
	case oci.IsReference(s):
		return &Input{OCI: s}
	}
	return &Input{Path: s}
}

// Result says what Generate did. It is returned on failure too, with the
// messages gathered until then.
type Result struct {
	Path     string   // the image's path
	Created  bool     // false when an existing image was kept
	Messages []string // what a verbose run prints
	// Notices are what a user should see even without -v: an existing
	// image kept, a size of 0. They are in Messages too.
	Notices []string
	// rec is the image's entry in its directory's record, when it was
	// created.
	rec *record.Image
}

// Event reports progress of a long step.
type Event struct {
	Image string // the output file name
	// Stage is "download", "decompress", "convert" or "push"; in a Build,
	// an image's last event says how it ended: "done", "kept" or
	// "failed".
	Stage string
	Done  int64
	Total int64
	// Data and DataTotal, when converting, count the input's data only
	// (DataTotal -1 until it is known): holes and zeros cost little time,
	// so they tell how long is left.
	Data, DataTotal int64
	// Index and Count place the image in a build: image Index of Count
	// (both 0 outside Build).
	Index, Count int
}

// Generate makes the image spec describes.
func Generate(ctx context.Context, spec Spec, opts ...Option) (*Result, error) {
	res := &Result{}
	err := generate(ctx, spec, newOptions(opts), res)
	return res, err
}

func generate(ctx context.Context, spec Spec, o *options, res *Result) error {
	own := *o // this image's input facts are noted in its own copy
	o = &own
	o.input = &inputNote{}
	t, err := decide(spec, res)
	if err != nil || t.keep {
		return err
	}
	var input inputSource
	if spec.Input != nil {
		input = func(say func(string, ...any)) (*os.File, int64, func(), error) {
			f, n, err := resolveInput(ctx, spec.Input, o.cacheDir, filepath.Base(t.path), o, say)
			if err != nil {
				return nil, 0, nil, err
			}
			return f, n, func() { f.Close() }, nil
		}
	}
	return makeImage(ctx, t, input, o, res)
}

// reporters are the say and notice of res: a message for -v, and one a
// user sees without it too.
func reporters(res *Result) (say, notice func(string, ...any)) {
	say = func(format string, args ...any) { res.Messages = append(res.Messages, sprintf(format, args...)) }
	notice = func(format string, args ...any) {
		say(format, args...)
		res.Notices = append(res.Notices, res.Messages[len(res.Messages)-1])
	}
	return say, notice
}

// target is what deciding an image settles before its input is read:
// where it goes, in which format, options and size, and whether it is
// made at all.
type target struct {
	spec        Spec
	format      disk.Format
	createOpt   disk.CreateOptions
	virtualSize int64
	path        string
	// keep: an image is there already and no --overwrite was given.
	keep bool
}

// decide validates spec and settles its target without touching the
// input or writing anything; res.Path is set as soon as it is known.
func decide(spec Spec, res *Result) (*target, error) {
	say, notice := reporters(res)
	format := spec.Format
	if format == "" {
		format = arch.DefaultFormat
	}
	requested, err := validateSpec(spec)
	if err != nil {
		return nil, err
	}
	f, createOpt, virtualSize, why, err := outputFormat(format, spec.FormatOptions, spec.Compress, requested)
	if err != nil {
		return nil, err
	}
	t := &target{spec: spec, format: f, createOpt: createOpt, virtualSize: virtualSize}
	t.path = OutputPath(spec.OutputDirectory, spec.Name, spec.Version, format)
	res.Path = t.path
	if why != "" {
		say("The size of %s is %d bytes, not the %d asked for: %s", res.Path, virtualSize, requested, why)
	}

	if _, err := os.Lstat(res.Path); err == nil {
		if !spec.Overwrite {
			notice("The output image: %s already exists and is kept (use --overwrite to replace it)", res.Path)
			t.keep = true
			return t, nil
		}
		say("The output image: %s already exists", res.Path)
		say("Overwriting the existing image: %s", res.Path)
	}
	if virtualSize == 0 {
		notice("The size is 0: %s will hold no data", res.Path)
	}
	return t, nil
}

// inputSource gives the verified input file of an image, open, its size,
// and how to give it back when the image is made: the file is the
// image's own in Generate, shared between the images of a build that
// have the same input.
type inputSource func(say func(string, ...any)) (f *os.File, size int64, release func(), err error)

// makeImage writes t from its input (nil for a blank image): temporary
// file, convert, check, rename into place.
func makeImage(ctx context.Context, t *target, input inputSource, o *options, res *Result) error {
	say, notice := reporters(res)
	spec, virtualSize := t.spec, t.virtualSize
	dir := filepath.Dir(res.Path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return newError(CodeCreateFailed, err, "Failed to create path: %s - error: %v", dir, err)
	}
	if spec.Overwrite {
		// The record must not vouch for the old image once the new one
		// may be in its place: a run killed in between leaves no entry
		// rather than a wrong one.
		if err := forgetRecorded(ctx, dir, filepath.Base(res.Path), o); err != nil {
			return err
		}
	}
	// What runs that were killed left behind goes before we add our own.
	removed, _ := output.CleanAbandoned(dir)
	for _, name := range removed {
		say("Removed %s, a temporary file left by a run that was killed", name)
	}

	var src *openedInput
	if input != nil {
		f, fileSize, release, err := input(say)
		if err != nil {
			return err
		}
		src, err = openResolved(f, fileSize, release, spec.Input.Format, spec.Input.Disk, say)
		if err != nil {
			return err
		}
		defer src.close()
		if n := src.image.Size(); src.format == "raw" && n%512 != 0 {
			notice("The raw input %s is %d bytes, not a whole number of 512-byte sectors (a truncated file?); its last sector is read as if padded with zeros", src.path, n)
		}
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

	created, out, err := writeImage(ctx, res.Path, t.format, t.createOpt, virtualSize, src, spec.Overwrite, true, o, say)
	if err != nil {
		return err
	}
	if !created {
		res.Notices = append(res.Notices, res.Messages[len(res.Messages)-1])
		return nil
	}
	res.Created = true
	abs, _ := filepath.Abs(res.Path)
	say("Generated image at: %s", abs)
	// An image in place is recorded even when the run is being
	// interrupted: a record must not miss an image it sits beside.
	return recordCreated(context.WithoutCancel(ctx), t, out, o, res)
}

// validateSpec checks what can be checked before touching any file and
// returns the virtual size in bytes.
func validateSpec(spec Spec) (int64, error) {
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
		msg := err.Error() // "invalid size ...": said once, as a sentence
		return 0, newError(CodeInvalidAttribute, err, "%s", strings.ToUpper(msg[:1])+msg[1:])
	}
	if n > math.MaxInt64-511 {
		return 0, newError(CodeInvalidAttribute, nil, "Invalid size %q: too large", spec.Size)
	}
	if in := spec.Input; in != nil {
		var given []string
		for _, src := range []struct{ name, value string }{{"a path", in.Path}, {"a url", in.URL}, {"an oci reference", in.OCI}} {
			if src.value != "" {
				given = append(given, src.name)
			}
		}
		switch {
		case len(given) == 0:
			return 0, newError(CodeMissingAttribute, nil, "Missing attribute: the input needs a path, a url or an oci reference")
		case len(given) > 1:
			return 0, newError(CodeInvalidAttribute, nil, "Both %s and %s are given for the input; only one can be", given[0], given[1])
		}
		if len(in.Mirrors) > 0 && in.URL == "" {
			return 0, newError(CodeInvalidAttribute, nil, "Mirrors are given for the input but no url")
		}
		if in.OCI != "" {
			if _, err := oci.ParseReference(in.OCI); err != nil {
				return 0, newError(CodeInvalidAttribute, err, "Invalid input %s: %v", in.OCI, err)
			}
		}
		if c := in.Checksum; c != nil {
			if err := c.Validate(); err != nil {
				code := CodeInvalidAttribute
				var se *checksum.SpecError
				if errors.As(err, &se) && se.Missing {
					code = CodeMissingAttribute
				}
				if errors.Is(err, checksum.ErrCannotMatch) {
					code = CodeChecksum
				}
				return 0, newError(code, err, "%v", err)
			}
		}
	}
	return n, nil
}

// imageMode is the permission of the images we write: what qemu-img's 0666
// gives under the usual umask 022 (Chmod does not apply the umask).
const imageMode = 0o644

// checkWritable refuses output formats we cannot write, naming those we can.
// outputFormat checks what is asked of an output format (that it can be
// written, its options, compression) and returns the format, the options
// to create with and the virtual size an image of size bytes gets: a disk
// is made of 512-byte sectors, and qemu-img create rounds up to one, as
// we do unless the format rounds otherwise (a VHD to its geometry); why
// says so when the size changed beyond a sector.
func outputFormat(name string, options map[string]string, compress bool, size int64) (f disk.Format, opt disk.CreateOptions, virtualSize int64, why string, err error) {
	f, ok := disk.Lookup(name)
	if !ok || f.Create == nil {
		return f, opt, 0, "", newError(CodeInvalidAttribute, nil,
			"Invalid output format %q: this version writes %s", name, strings.Join(disk.WritableFormats(), ", "))
	}
	opt = disk.CreateOptions{Options: options, Compress: compress}
	if err := f.CheckOptions(opt); err != nil {
		return f, opt, 0, "", newError(CodeInvalidAttribute, err, "Invalid output options: %v", err)
	}
	if f.Size == nil {
		return f, opt, (size + 511) &^ 511, "", nil
	}
	virtualSize, why, err = f.Size(size, opt)
	if err != nil {
		return f, opt, 0, "", newError(CodeInvalidAttribute, err, "Invalid size %d for a %s image: %v", size, name, err)
	}
	return f, opt, virtualSize, why, nil
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// writeImage creates the image under a temporary name beside its final one,
// fills it, checks it and puts it in place. On failure the temporary file
// is removed and an existing image at path is untouched; without overwrite
// an image that appeared at path meanwhile (another run) is kept, and
// created is false.
func writeImage(ctx context.Context, path string, f disk.Format, createOpt disk.CreateOptions, virtualSize int64, src *openedInput, overwrite, hash bool, o *options, say func(string, ...any)) (created bool, out written, err error) {
	format := f.Name
	base := filepath.Base(path)
	tmp, err := output.Create(path, imageMode)
	if err != nil {
		return false, out, newError(CodeCreateFailed, err, "Failed to create path: %s - error: %v", path, err)
	}
	published := false
	defer func() {
		if !published {
			tmp.Abort()
		}
	}()

	w, err := f.Create(tmp.File, virtualSize, createOpt)
	if err != nil {
		return false, out, newError(CodeCreateFailed, err, "Failed to create path: %s - error: %v", path, err)
	}
	if src != nil {
		start := tmp.StartWriteBehind
		if hash {
			// Hashed for the record once written: kept in the page cache
			// until then.
			start = tmp.StartWriteBehindKeepingCache
		}
		wb := start(!o.noSync)
		stats, err := convert.Copy(ctx, w, src.image, convert.Options{
			Length:    virtualSize,
			ZeroBlock: f.BlockSize(createOpt),
			Pool:      o.pool,
			Progress: func(p convert.Progress) {
				wb.Progress(p.Done)
				o.emit(Event{Image: base, Stage: "convert", Done: p.Done, Total: p.Total, Data: p.Data, DataTotal: p.DataTotal})
			},
		})
		wb.Stop()
		if err != nil {
			w.Close()
			if ctx.Err() != nil {
				return false, out, newError(CodeCreateFailed, err, "Interrupted while converting %s into %s: %v", src.path, path, ctx.Err())
			}
			var se *convert.SourceError
			if errors.As(err, &se) {
				return false, out, newError(CodeLoadFailed, err, "Failed to load path: %s - error: %v", src.path, err)
			}
			return false, out, newError(CodeCreateFailed, err, "Failed to create path: %s - error: converting %s: %v", path, src.path, err)
		}
		say("Converted %s (%s) to %s: %d bytes of data copied, %d bytes of zeros skipped", src.path, src.format, format, stats.BytesWritten, stats.ZeroSkipped)
		if stats.BytesStored > 0 {
			say("Compressed the %d bytes of data into %d bytes", stats.BytesWritten, stats.BytesStored)
		}
	}
	if err := w.Close(); err != nil {
		return false, out, newError(CodeCreateFailed, err, "Failed to create path: %s - error: %v", path, err)
	}
	// The record's digest (an image of Generate or Build; not Convert's),
	// read back while the file is in the page cache, at the same time as
	// the check and the sync, which wait on the disk more than the CPU.
	if hash {
		// Not stopped by an interruption: an image put in place is
		// recorded (a failed one cancels it below).
		h := startHash(context.WithoutCancel(ctx), tmp.Name())
		defer func() {
			if !created {
				h.cancel() // a failed or lost image is not recorded
			}
			if h.wait(&out) != nil && created {
				say("%s is not in the record: hashing it failed: %v", path, h.err)
			}
		}()
	}
	if f.Check != nil {
		report, err := f.CheckFile(tmp.File)
		if err != nil {
			return false, out, newError(CodeCheck, err, "Failed to check path: %s - error: %v", path, err)
		}
		if !report.OK() {
			return false, out, newError(CodeCheck, nil, "Failed to check path: %s - %d errors, %d corruptions, %d leaks: %s",
				path, report.Errors, report.Corruptions, report.Leaks, strings.Join(report.Problems, "; "))
		}
		say("Checked %s: no errors were found on the image", path)
	}
	if err := ctx.Err(); err != nil {
		return false, out, newError(CodeCreateFailed, err, "Interrupted before %s was put in place: %v", path, err)
	}
	if o.beforePublish != nil {
		o.beforePublish(path)
	}
	published = true
	err = tmp.Publish(overwrite, !o.noSync)
	if errors.Is(err, output.ErrExists) {
		say("The output image: %s was created by another run while this one worked; it is kept (use --overwrite to replace it)", path)
		return false, out, nil
	}
	if err != nil {
		return false, out, newError(CodeCreateFailed, err, "Failed to create path: %s - error: %v", path, err)
	}
	return true, out, nil
}

// openedInput is an input image ready to be read.
type openedInput struct {
	path    string
	format  string
	file    *os.File
	image   disk.Image
	release func() // gives the file back (closes it, unless it is shared)
}

func (in *openedInput) close() {
	in.image.Close()
	in.release()
}

// openInput resolves, verifies and opens the input image: a download is
// fetched (verified while it downloads) into the cache at cacheDir; image
// names the output in progress events.
func openInput(ctx context.Context, in *Input, cacheDir, image string, o *options, say func(string, ...any)) (*openedInput, error) {
	f, fileSize, err := resolveInput(ctx, in, cacheDir, image, o, say)
	if err != nil {
		return nil, err
	}
	return openResolved(f, fileSize, func() { f.Close() }, in.Format, in.Disk, say)
}

// openResolved opens the verified input file f as an image: its format
// from its content (which must agree with declared, when given), after the
// safety policy. release gives f back; it is called on failure too.
func openResolved(f *os.File, fileSize int64, release func(), declared string, ovaIndex int, say func(string, ...any)) (*openedInput, error) {
	path := f.Name()
	if fileSize == 0 {
		release()
		return nil, newError(CodeLoadFailed, nil, "Failed to load path: %s - error: the file is empty (0 bytes): it is not a disk image", path)
	}
	// An OVA appliance: its disk is read where it lies in the tar.
	var src io.ReaderAt = f
	src, fileSize, err := ovaDisk(f, fileSize, ovaIndex, say)
	if err != nil {
		release()
		return nil, err
	}
	format, report, err := detectFormatAt(src, fileSize, path, declared)
	if err != nil {
		release()
		return nil, err
	}
	for _, note := range report.Notes {
		say("Inspected %s: %s", path, note)
	}
	fmtDef, _ := disk.Lookup(format)
	if fmtDef.Open == nil {
		release()
		return nil, newError(CodeLoadFailed, nil, "Failed to load path: %s - error: it is a %s image, which this version cannot read yet (it reads %s); convert it to one of those first", path, format, strings.Join(disk.ReadableFormats(), ", "))
	}
	img, err := fmtDef.Open(src, fileSize, disk.OpenOptions{})
	if err != nil {
		release()
		return nil, newError(CodeLoadFailed, err, "Failed to load path: %s - error: %v", path, err)
	}
	say("Input %s is a %s image with a virtual size of %d bytes", path, format, img.Size())
	return &openedInput{path: path, format: format, file: f, image: img, release: release}, nil
}

// detectFormat names the input's format from its content and applies the
// safety policy (package inspect) before anything opens the image: a
// declared format that contradicts the content is an invalid attribute
// (code 5); a polyglot, an image that refers to other files, an encrypted
// one, one with unknown features or absurd geometry fails to load (code 2).
func detectFormat(f *os.File, fileSize int64, declared string) (string, inspect.Report, error) {
	return detectFormatAt(f, fileSize, f.Name(), declared)
}

// detectFormatAt is detectFormat for an image inside a file (an OVA's
// disk); name names it in messages.
func detectFormatAt(r io.ReaderAt, size int64, name, declared string) (string, inspect.Report, error) {
	rep, err := inspect.InspectAt(r, size, declared, inspect.Policy{})
	switch {
	case err == nil:
		return rep.Format, rep, nil
	case errors.Is(err, inspect.ErrMismatch):
		return "", rep, newError(CodeInvalidAttribute, err, "Invalid input format for %s: %v", name, err)
	default:
		return "", rep, newError(CodeLoadFailed, err, "Failed to load path: %s - error: refusing the input image: %v", name, err)
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
	if in.OCI != "" {
		return pullInput(ctx, in, cacheDir, image, o, say)
	}
	path := in.Path
	f, err := safefile.OpenInput(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if scheme, ok := location.Scheme(path); ok {
			return nil, 0, newError(CodeInvalidAttribute, err, "Invalid input %s: the %s scheme is not supported; inputs are local paths, http and https URLs, and oci:// containerDisks (download it first, then give its path)", path, scheme)
		}
		if meant, ok := location.Misspelt(path); ok {
			return nil, 0, newError(CodePathNotFound, err, "Path not found: %s - error: the defined input path does not exist (did you mean %s?)", path, meant)
		}
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
	if c := in.Checksum; c != nil {
		verified, err := verifyChecksum(ctx, f, st.Size(), path, c, say)
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		o.input.noteVerified(verified)
		if verified != nil && o.afterVerify != nil {
			o.afterVerify(path)
		}
	}
	return decompressLocal(ctx, f, cacheDir, image, o, say)
}

// verifyChecksum hashes the open input file and compares the digest with
// the one c asks for: its value, or the one its checksum file lists for
// the file's name. verified is false when c asks for none.
func verifyChecksum(ctx context.Context, f *os.File, size int64, path string, c *checksum.Spec, say func(string, ...any)) (verified *checksum.Expected, err error) {
	want, err := expectedChecksum(ctx, c, path, say)
	if err != nil || want == nil {
		return nil, err
	}
	got, err := checksum.Digest(ctx, io.NewSectionReader(f, 0, size), want.Algorithm, c.BufferSize, want.ReadBytes)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil, newError(CodeChecksum, err, "Interrupted while calculating the checksum of %s", path)
		}
		return nil, newError(CodeChecksum, err, "Failed to calculate the checksum of %s: %v", path, err)
	}
	if !checksum.Equal(want.Digest, got) {
		return nil, newError(CodeChecksum, nil,
			"The checksum of the input image: %s does not match the expected checksum: %s (%s of %s)", got, want.Digest, want.Algorithm, path)
	}
	say("The calculated checksum: %s matches the defined checksum: %s", got, want.Digest)
	return want, nil
}
