package main

import (
	"context"

	genvm "github.com/ucphhpc/gen-vm-image-go"
	"github.com/ucphhpc/gen-vm-image-go/jsonproto"
)

var convertOptions = []option{
	{names: []string{"-f"}, dest: "input_format", metavar: "INPUT_FORMAT", complete: completeFormat,
		help: "The input's format; it must agree with the content. (default: detected)"},
	{names: []string{"-O"}, dest: "output_format", metavar: "OUTPUT_FORMAT", complete: completeWritable,
		help: outputFormatHelp("The output format") + " Without it, the output's extension decides."},
	formatOptionsOption, compressOption,
	noSyncOption,
	verboseOption, quietOption,
}

func convertCommand() command {
	return command{
		name:    "convert",
		summary: "Convert an image to another format (like qemu-img convert)",
		description: `Convert an image into a new image of another format and the same virtual size,
as qemu-img convert does: in parallel, skipping zeros, written under a
temporary name, checked and renamed into place. An existing output is replaced.

Without -O the output format is the one the output's name says (.qcow2; .raw
and .img: raw), else qcow2; a name that says another format than -O is refused.`,
		args: []positional{
			{name: "input", help: "The image to convert (its format is detected from the content).", complete: completeFile},
			{name: "output", help: "The new image.", complete: completeFile},
		},
		options: convertOptions,
		epilog: `The result is printed as JSON: on stdout on success, on stderr on failure,
and the exit code is its return_code (see the README for the table).
`,
		run: runConvert,
	}
}

func runConvert(ctx context.Context, e env, p *parsed) int {
	formatOptions, err := parseFormatOptions(p)
	if err != nil {
		return respond(e, jsonproto.NewResponse("", nil, p.switches["verbose"], err))
	}
	opts, stop, _ := runOptions(e, p) // convert takes no download options
	res, err := genvm.Convert(ctx, genvm.ConvertSpec{
		Input: p.positionals[0], InputFormat: p.values["input_format"],
		Output: p.positionals[1], OutputFormat: p.values["output_format"],
		FormatOptions: formatOptions, Compress: p.switches["compress"],
	}, opts...)
	stop()
	notify(e, p, res.Notices)
	return respond(e, jsonproto.NewResponse("", res.Messages, p.switches["verbose"], err))
}
