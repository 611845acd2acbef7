package main

import (
	"context"
	"fmt"
	"strings"

	genvm "github.com/ucphhpc/gen-vm-image-go"
	"github.com/ucphhpc/gen-vm-image-go/jsonproto"
)

var convertOptions = []option{
	{names: []string{"-f"}, dest: "input_format", metavar: "INPUT_FORMAT",
		help: "The input's format; it must agree with the content. (default: detected)"},
	{names: []string{"-O"}, dest: "output_format", metavar: "OUTPUT_FORMAT",
		help: outputFormatHelp("The output format")},
	noSyncOption,
	{names: []string{"--verbose", "-v"}, dest: "verbose", help: "Print verbose output."},
}

func convertUsage() string {
	return fmt.Sprintf("usage: %s convert [-h] %s input output\n", prog, strings.Join(usageItems(convertOptions), " "))
}

const convertHelp = `
Convert an image into a new image of another format and the same virtual size,
as qemu-img convert does: in parallel, skipping zeros, written under a
temporary name, checked and renamed into place. An existing output is replaced.

options:
  -h, --help            show this help message and exit
`

func runConvert(ctx context.Context, e env, args []string) int {
	p, err := parseArgs(args, convertOptions)
	if err != nil {
		return usageFail(e, convertUsage(), err)
	}
	if p.help {
		fmt.Fprint(e.stdout, convertUsage()+convertHelp+formatOptions(convertOptions))
		return 0
	}
	if len(p.positionals) != 2 {
		return usageFail(e, convertUsage(), fmt.Errorf("expected an input and an output path"))
	}
	opts, stop, _ := runOptions(e, p) // convert takes no download options
	defer stop()
	res, err := genvm.Convert(ctx, genvm.ConvertSpec{
		Input: p.positionals[0], InputFormat: p.values["input_format"],
		Output: p.positionals[1], OutputFormat: p.values["output_format"],
	}, opts...)
	return respond(e, jsonproto.NewResponse("", res.Messages, p.switches["verbose"], err))
}
