package genvm

import (
	"context"
	"os"
	"path/filepath"

	"github.com/ucphhpc/gen-vm-image-go/arch"
	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/output"
)

// ConvertSpec describes a plain conversion, as `qemu-img convert` does one.
type ConvertSpec struct {
	Input        string // path of the input image
	InputFormat  string // optional; must agree with the content
	Output       string // path of the new image; replaced if it exists
	OutputFormat string // default: what the output's extension says, else arch.DefaultFormat
	// FormatOptions and Compress are as in Spec.
	FormatOptions map[string]string
	Compress      bool
}

// Convert writes the input image into a new image of the same virtual size,
// through the same steps as Generate (temporary name, check, fsync, rename).
func Convert(ctx context.Context, spec ConvertSpec, opts ...Option) (*Result, error) {
	o := newOptions(opts)
	res := &Result{Path: spec.Output}
	say := func(format string, args ...any) { res.Messages = append(res.Messages, sprintf(format, args...)) }
	format, err := convertFormat(spec)
	if err != nil {
		return res, err
	}
	// The format and its options, before the input is opened; the size
	// is checked once the input's is known (one sector fits every format).
	if _, _, _, _, err := outputFormat(format, spec.FormatOptions, spec.Compress, 512); err != nil {
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
	f, createOpt, virtualSize, why, err := outputFormat(format, spec.FormatOptions, spec.Compress, src.image.Size())
	if err != nil {
		return res, err
	}
	if why != "" {
		say("The size of %s is %d bytes, not the input's %d: %s", spec.Output, virtualSize, src.image.Size(), why)
	}
	if _, _, err := writeImage(ctx, spec.Output, f, createOpt, virtualSize, src, true, false, o, say); err != nil {
		return res, err
	}
	res.Created = true
	return res, nil
}

// convertFormat is the output format of a conversion: the one asked for,
// else the one the output's extension names (".raw", ".img": raw), else
// the default. An extension that names another format than the one asked
// for is refused: out.raw holding a qcow2 would fool the next program.
func convertFormat(spec ConvertSpec) (string, error) {
	named, ok := disk.ForExtension(spec.Output)
	if f, known := disk.Lookup(spec.OutputFormat); known {
		spec.OutputFormat = f.Name // an alias: vhd is vpc
	}
	switch {
	case spec.OutputFormat == "" && ok:
		return named.Name, nil
	case spec.OutputFormat == "":
		return arch.DefaultFormat, nil
	case ok && named.Name != spec.OutputFormat:
		ext := "." + spec.OutputFormat
		if f, ok := disk.Lookup(spec.OutputFormat); ok && len(f.Extensions) > 0 {
			ext = f.Extensions[0]
		}
		return "", newError(CodeInvalidAttribute, nil, "The output %s is named as a %s image, but the output format is %s; name it %s, or leave the format out",
			spec.Output, named.Name, spec.OutputFormat, ext)
	}
	return spec.OutputFormat, nil
}
