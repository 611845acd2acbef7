package genvm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ucphhpc/gen-vm-image-go/arch"
	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/suggest"
	"github.com/ucphhpc/gen-vm-image-go/publish/oci"
)

// BuildSpec describes a `multiple` run: the images of an architecture,
// and what applies to every one of them (see Spec).
type BuildSpec struct {
	Architecture    *arch.Architecture // LoadArchitecture reads one
	OutputDirectory string             // default DefaultOutputDirectory
	Overwrite       bool
	// Update rebuilds the images that are stale — whose spec or input
	// changed since the output directory's record was written (see Plan)
	// — and leaves the others; without it an image there is kept, stale
	// or not (as without Overwrite).
	Update      bool
	AllowShrink bool
	// Push, when set (REGISTRY/PREFIX), pushes every image of the
	// architecture, once it is built or found already there, to
	// PushReference(Push, NAME, VERSION) as a KubeVirt containerDisk (see
	// Push); PushPlatform and PushCreated are PushSpec's Platform and
	// Created.
	Push         string
	PushPlatform string
	PushCreated  time.Time
	// Keys, when given, are the keys of the only images to build; the
	// others are left alone.
	Keys []string
	// Shard, when set, builds only the images (of Keys, when given) that
	// ShardOf assigns to it: one task of a job array.
	Shard Shard
}

// ImageResult is the outcome of one image of an architecture.
type ImageResult struct {
	Key string // the image's key in the architecture file
	Result
	// Pushed says where the image was pushed, with BuildSpec.Push; nil
	// otherwise, and when the image or its push failed.
	Pushed *Pushed
	Err    error
	// Elapsed is how long the image took, from when it could start (its
	// input fetched) to when it was built and pushed.
	Elapsed time.Duration
	// Stopped: the image ended because the build was being stopped (an
	// interruption, or --fail-fast after another image failed), not
	// through a fault of its own; Err says where it was.
	Stopped bool
}

// PushReference is where Build pushes an image: PREFIX/NAME:VERSION, or
// PREFIX/NAME:latest without a version.
func PushReference(prefix, name, version string) string {
	if version == "" {
		version = "latest"
	}
	return strings.TrimSuffix(strings.TrimPrefix(prefix, oci.Scheme), "/") + "/" + name + ":" + version
}

// checkPushes refuses, before anything is built, pushes that cannot work:
// a reference that an image's name or version cannot be part of, a format
// KubeVirt does not read, a platform that does not parse. Every problem is
// said at once.
func checkPushes(spec BuildSpec, images []arch.Image) error {
	if err := checkPlatform(spec.PushPlatform); err != nil {
		return err
	}
	var problems []string
	rules := ""
	for _, im := range images {
		ref := PushReference(spec.Push, im.Name, im.Version)
		if _, err := oci.ParseReference(ref); err != nil {
			problems = append(problems, fmt.Sprintf("image %s cannot be pushed as %s: %v", im.Key, ref, err))
			rules = " (a repository name is lowercase letters and digits, separated by . _ - or /; a tag is at most 128 letters, digits and . _ -)"
		}
		if !slices.Contains(kubeVirtFormats, im.Format) {
			problems = append(problems, fmt.Sprintf("image %s is a %s image, and a containerDisk holds %s", im.Key, im.Format, strings.Join(kubeVirtFormats, " or ")))
		}
	}
	if len(problems) > 0 {
		return newError(CodeInvalidAttribute, nil, "Cannot push to %s: %s%s", spec.Push, strings.Join(problems, "; "), rules)
	}
	return nil
}

// BuildResult is the outcome of Build.
type BuildResult struct {
	Images []ImageResult
	// NotBuilt are the images a stop (an interruption, --fail-fast) kept
	// from being built: never started, or stopped at work (Stopped) once
	// another image had failed. Their results do not count.
	NotBuilt []ImageResult
	Messages []string // what a verbose run prints, in order
	// Notices are what a user should see even without -v: the
	// architecture file's warnings (unknown keys), images kept.
	Notices []string
	Summary string // the one-line response
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
	a, err := arch.Load(path, arch.WithOutputFormats(disk.WithAliases(disk.WritableFormats())...),
		arch.WithInputFormats(disk.WithAliases(known), disk.ReadableFormats()),
		arch.WithReferenceCheck(func(ref string) error {
			_, err := oci.ParseReference(ref)
			return err
		}),
		arch.WithOutputCheck(func(format string, options map[string]string, compress bool) error {
			f, ok := disk.Lookup(format)
			if !ok {
				return nil // reported as an unknown format already
			}
			return f.CheckOptions(disk.CreateOptions{Options: options, Compress: compress})
		}))
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

// SpecFor turns one image of b's architecture into a Spec.
func SpecFor(im arch.Image, b BuildSpec) Spec {
	s := Spec{
		Name:            im.Name,
		Size:            im.Size,
		Version:         im.Version,
		Format:          im.Format,
		OutputDirectory: b.OutputDirectory,
		Overwrite:       b.Overwrite,
		AllowShrink:     b.AllowShrink,
		FormatOptions:   im.FormatOptions,
		Compress:        im.Compress,
	}
	if in := im.Input; in != nil {
		s.Input = &Input{Path: in.Path, URL: in.URL, OCI: in.OCI, Format: in.Format, Disk: in.Disk}
		if len(in.URLs) > 1 {
			s.Input.Mirrors = in.URLs[1:]
		}
		if c := in.Checksum; c != nil {
			spec := c.Spec
			s.Input.Checksum = &spec
		}
	}
	return s
}

// Build generates the images of spec's architecture (those of spec.Keys,
// when given), several at once (WithJobs). Each image is decided first
// (planBuild), then built by buildImage; an input that images share is
// fetched and verified once. The results are in the architecture's order,
// whatever order the images finished in. Build returns the first failure's
// error (with its code) after trying the rest, unless WithFailFast is
// given.
func Build(ctx context.Context, spec BuildSpec, opts ...Option) (*BuildResult, error) {
	o := newOptions(opts)
	dir := spec.OutputDirectory
	if dir == "" {
		dir = DefaultOutputDirectory
	}
	res := &BuildResult{}
	for _, w := range spec.Architecture.Warnings {
		res.Messages = append(res.Messages, "Warning: "+w)
		res.Notices = append(res.Notices, w)
	}
	images, err := selectImages(spec.Architecture, spec.Keys, spec.Shard)
	if err != nil {
		res.Summary = err.Error()
		return res, err
	}
	if len(images) == 0 {
		res.Summary = fmt.Sprintf("Nothing to build: no image falls to %s", spec.Shard)
		return res, nil
	}
	if spec.Push != "" {
		if err := checkPushes(spec, images); err != nil {
			res.Summary = err.Error()
			return res, err
		}
	}
	plan := planImages(ctx, spec, images, o, spec.Update)
	if !o.noSpaceCheck {
		if err := plan.checkSpace(); err != nil {
			res.Summary = err.Error()
			return res, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e := newError(CodeCreateFailed, err, "Failed to create path: %s - error: Failed to create the images output directory: %v", dir, err)
		res.Summary = e.Msg
		return res, e
	}
	jobs := planBuild(spec, images, o, plan)
	first := runJobs(ctx, spec, jobs, o)
	for _, j := range jobs {
		if !j.ran {
			res.NotBuilt = append(res.NotBuilt, j.result)
			continue
		}
		ir := j.result
		res.Messages = append(res.Messages, ir.Messages...)
		res.Notices = append(res.Notices, ir.Notices...)
		if ir.Err != nil {
			res.Messages = append(res.Messages, fmt.Sprintf("Image %s failed (return code %d): %v", ir.Key, CodeOf(ir.Err), ir.Err))
		}
		res.Images = append(res.Images, ir)
	}
	abs, _ := filepath.Abs(dir)
	pushed := ""
	if spec.Push != "" && first == nil {
		pushed = fmt.Sprintf("; pushed them to %s", spec.Push)
	}
	if first == nil {
		kept := 0
		for _, im := range res.Images {
			if !im.Created {
				kept++
			}
		}
		switch {
		case kept > 0 && spec.Update:
			// --update leaves only the images that are up to date.
			res.Summary = fmt.Sprintf("Built %d of %d images in %s; %d were up to date", len(res.Images)-kept, len(res.Images), abs, kept)
		case kept == 0:
			res.Summary = "Successfully built the images in: " + abs
		case kept == len(res.Images):
			res.Summary = fmt.Sprintf("Nothing to build in %s: all %d images exist already and were kept (use --overwrite to replace them)", abs, kept)
		default:
			res.Summary = fmt.Sprintf("Built %d of %d images in %s; %d existed already and were kept (use --overwrite to replace them)",
				len(res.Images)-kept, len(res.Images), abs, kept)
		}
		res.Summary += pushed
		return res, nil
	}
	res.Summary = failureSummary(res, len(images), abs, first)
	return res, &Error{Code: CodeOf(first), Msg: res.Summary, Err: first}
}

// failureSummary says how a build that did not succeed ended: the images
// that failed, each with its error; those a stop ended at work or kept
// from starting, by key; and how many were built.
func failureSummary(res *BuildResult, count int, dir string, first error) string {
	var failed, stopped, notStarted []string
	built, kept := 0, 0
	for _, im := range res.Images {
		switch {
		case im.Err == nil && im.Created:
			built++
		case im.Err == nil:
			kept++
		case im.Stopped:
			stopped = append(stopped, im.Key)
		default:
			failed = append(failed, fmt.Sprintf("%s (return code %d): %v", im.Key, CodeOf(im.Err), im.Err))
		}
	}
	for _, im := range res.NotBuilt {
		if im.Stopped {
			stopped = append(stopped, im.Key)
		} else {
			notStarted = append(notStarted, im.Key)
		}
	}
	if count == 1 && len(failed) == 1 {
		return res.Images[0].Err.Error()
	}
	var s string
	switch {
	case len(failed) > 0:
		s = fmt.Sprintf("%d of %d images failed in %s: %s", len(failed), count, dir, strings.Join(failed, "; "))
	case count == 1:
		return first.Error()
	default: // stopped before any image failed
		s = fmt.Sprintf("Interrupted with %d of %d images built in %s", built, count, dir)
		if kept > 0 {
			s += fmt.Sprintf(" (%d kept)", kept)
		}
	}
	if len(stopped) > 0 {
		s += "; stopped at work: " + strings.Join(stopped, ", ")
	}
	if len(notStarted) > 0 {
		s += "; not started: " + strings.Join(notStarted, ", ")
	}
	return s
}

// selectImages returns the images of a named by keys (all of them when
// keys is empty) that fall to shard, in the file's order. The keys are
// those of the whole file, so a key of another shard is valid and builds
// nothing here; an unknown key is an invalid attribute, with the key meant
// when one is close.
func selectImages(a *arch.Architecture, keys []string, shard Shard) ([]arch.Image, error) {
	if len(keys) == 0 {
		return shard.Select(a).Images, nil
	}
	var all []string
	for _, im := range a.Images {
		all = append(all, im.Key)
	}
	var problems []string
	for _, k := range keys {
		if slices.Contains(all, k) {
			continue
		}
		p := fmt.Sprintf("%q", k)
		if s := suggest.Closest(k, all); s != "" {
			p += fmt.Sprintf(" (did you mean %q?)", s)
		}
		problems = append(problems, p)
	}
	if len(problems) > 0 {
		return nil, newError(CodeInvalidAttribute, nil, "Invalid image key %s: the architecture file declares %s",
			strings.Join(problems, ", "), strings.Join(all, ", "))
	}
	var out []arch.Image
	for _, im := range a.Images {
		if slices.Contains(keys, im.Key) && (shard.Count <= 1 || ShardOf(im.Key, shard.Count) == shard.Index) {
			out = append(out, im)
		}
	}
	return out, nil
}
