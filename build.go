package genvm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ucphhpc/gen-vm-image-go/arch"
	"github.com/ucphhpc/gen-vm-image-go/disk"
)

// BuildOptions are the choices of a `multiple` run.
type BuildOptions struct {
	OutputDirectory string // default DefaultOutputDirectory
	Overwrite       bool
	AllowShrink     bool
	// FailFast stops at the first image that fails, as the Python tool
	// does. Without it every image that can be built is built.
	FailFast bool
	// CacheDir holds downloaded inputs; "" means fetch.DefaultCacheDir().
	CacheDir string
}

// ImageResult is the outcome of one image of an architecture.
type ImageResult struct {
	Key string // the image's key in the architecture file
	Result
	Err error
}

// BuildResult is the outcome of Build.
type BuildResult struct {
	Images   []ImageResult
	Messages []string // what a verbose run prints, in order
	Summary  string   // the one-line response
}

// Failed returns the results of the images that failed, in file order.
func (r *BuildResult) Failed() []ImageResult {
	var out []ImageResult
	for _, im := range r.Images {
		if im.Err != nil {
			out = append(out, im)
		}
	}
	return out
}

// LoadArchitecture reads and validates an architecture file, mapping its
// problems onto return codes: 1 missing file, 2 unreadable or not YAML, 4 a
// required key missing, 5 a wrong type or value.
func LoadArchitecture(path string) (*arch.Architecture, error) {
	var known []string
	for _, f := range disk.Formats() {
		known = append(known, f.Name)
	}
	a, err := arch.Load(path, arch.WithOutputFormats(disk.WritableFormats()...),
		arch.WithInputFormats(known, disk.ReadableFormats()))
	if err == nil {
		return a, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, newError(CodePathNotFound, err, "Path not found: %s - error: Failed to find the architecture file.", path)
	}
	var verr *arch.ValidationError
	if errors.As(err, &verr) {
		return nil, newError(validationCode(verr), err, "%v", err)
	}
	return nil, newError(CodeLoadFailed, err, "Failed to load path: %s - error: %v", path, err)
}

// validationCode maps the worst kind of problem onto the reference's codes:
// 2 for a file that is not YAML, 4 for a missing key, 5 for a wrong value.
func validationCode(verr *arch.ValidationError) int {
	code := CodeInvalidAttribute
	for _, p := range verr.Problems {
		switch p.Kind {
		case arch.Syntax:
			return CodeLoadFailed
		case arch.Missing:
			code = CodeMissingAttribute
		}
	}
	return code
}

// SpecFor turns one image of an architecture into a Spec.
func SpecFor(im arch.Image, opt BuildOptions) Spec {
	s := Spec{
		Name:            im.Name,
		Size:            im.Size,
		Version:         im.Version,
		Format:          im.Format,
		OutputDirectory: opt.OutputDirectory,
		Overwrite:       opt.Overwrite,
		AllowShrink:     opt.AllowShrink,
		CacheDir:        opt.CacheDir,
	}
	if in := im.Input; in != nil {
		s.Input = &Input{Path: in.Path, URL: in.URL, Format: in.Format}
		if len(in.URLs) > 1 {
			s.Input.Mirrors = in.URLs[1:]
		}
		if c := in.Checksum; c != nil {
			s.Input.Checksum = &Checksum{Type: c.Type, Value: c.Value, File: c.File, Signature: c.Signature, Key: c.Key,
				BufferSize: c.BufferSize, ReadBytes: c.ReadBytes}
		}
	}
	return s
}

// Build generates every image of an architecture, one after the other. It
// returns the first failure's error (with its code) after trying the rest,
// unless FailFast is set.
func Build(ctx context.Context, a *arch.Architecture, opt BuildOptions, opts ...Option) (*BuildResult, error) {
	var o options
	for _, fn := range opts {
		fn(&o)
	}
	dir := opt.OutputDirectory
	if dir == "" {
		dir = DefaultOutputDirectory
	}
	res := &BuildResult{}
	for _, w := range a.Warnings {
		res.Messages = append(res.Messages, "Warning: "+w)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e := newError(CodeCreateFailed, err, "Failed to create path: %s - error: Failed to create the images output directory: %v", dir, err)
		res.Summary = e.Msg
		return res, e
	}
	var first error
	for _, im := range a.Images {
		if err := ctx.Err(); err != nil {
			if first == nil {
				first = newError(CodeCreateFailed, err, "Interrupted before image %s was built", im.Key)
			}
			break
		}
		ir := ImageResult{Key: im.Key}
		ir.Err = generate(ctx, SpecFor(im, opt), &o, &ir.Result)
		res.Messages = append(res.Messages, ir.Messages...)
		if ir.Err != nil {
			res.Messages = append(res.Messages, fmt.Sprintf("Image %s failed (return code %d): %v", im.Key, CodeOf(ir.Err), ir.Err))
			if first == nil {
				first = ir.Err
			}
		}
		res.Images = append(res.Images, ir)
		if ir.Err != nil && opt.FailFast {
			break
		}
	}
	abs, _ := filepath.Abs(dir)
	if first == nil {
		res.Summary = "Successfully built the images in: " + abs
		return res, nil
	}
	failed := res.Failed()
	var parts []string
	for _, f := range failed {
		parts = append(parts, fmt.Sprintf("%s (return code %d): %v", f.Key, CodeOf(f.Err), f.Err))
	}
	res.Summary = fmt.Sprintf("%d of %d images failed in %s: %s", len(failed), len(a.Images), abs, strings.Join(parts, "; "))
	if len(failed) == 1 && len(a.Images) == 1 {
		res.Summary = failed[0].Err.Error()
	}
	return res, &Error{Code: CodeOf(first), Msg: res.Summary, Err: first}
}
