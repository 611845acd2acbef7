package genvm

import (
	"context"
	"os"
	"path/filepath"

	"github.com/ucphhpc/gen-vm-image-go/arch"
	"github.com/ucphhpc/gen-vm-image-go/output"
)

// ConvertSpec describes a plain conversion, as `qemu-img convert` does one.
type ConvertSpec struct {
	Input        string // path of the input image
	InputFormat  string // optional; must agree with the content
	Output       string // path of the new image; replaced if it exists
	OutputFormat string // default arch.DefaultFormat
}

// Convert writes the input image into a new image of the same virtual size,
// through the same steps as Generate (temporary name, check, fsync, rename).
func Convert(ctx context.Context, spec ConvertSpec, opts ...Option) (*Result, error) {
	o := newOptions(opts)
	res := &Result{Path: spec.Output}
	say := func(format string, args ...any) { res.Messages = append(res.Messages, sprintf(format, args...)) }
	format := spec.OutputFormat
	if format == "" {
		format = arch.DefaultFormat
	}
	if err := checkWritable(format); err != nil {
		return res, err
	}
	src, err := openInput(ctx, &Input{Path: spec.Input, Format: spec.InputFormat}, "", "", o, say)
	if err != nil {
		return res, err
	}
	defer src.close()
	if dir := filepath.Dir(spec.Output); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return res, newError(CodeCreateFailed, err, "Failed to create path: %s - error: %v", dir, err)
		}
	}
	removed, _ := output.CleanAbandoned(filepath.Dir(spec.Output))
	for _, name := range removed {
		say("Removed %s, a temporary file left by a run that was killed", name)
	}
	if _, err := writeImage(ctx, spec.Output, format, src.image.Size(), src, true, o, say); err != nil {
		return res, err
	}
	res.Created = true
	return res, nil
}
