package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	genvm "github.com/ucphhpc/gen-vm-image-go"
	"github.com/ucphhpc/gen-vm-image-go/checksum"
	"github.com/ucphhpc/gen-vm-image-go/jsonproto"
)

var singleOptions = []option{
	{names: []string{"-i", "--input"}, dest: "input", metavar: "SINGLE_INPUT", complete: completeFile,
		help: "The path or url to the input image that the generated image should be based on.\nA url (http or https) is downloaded into the cache, verified while it\ndownloads, and decompressed if it is .xz, .gz, .bz2 or .zst. An\noci://REGISTRY/REPOSITORY:TAG (or @sha256:DIGEST) is a KubeVirt\ncontainerDisk: its disk is taken out of the layer as it downloads,\nverified against the layer's digest and cached."},
	{names: []string{"-if", "--input-format"}, dest: "input_format", metavar: "SINGLE_INPUT_FORMAT", complete: completeFormat,
		help: "The format of the input image. Detected from the content if not provided;\nif provided, it must agree with the content."},
	{names: []string{"--input-disk"}, dest: "input_disk", metavar: "N",
		help: "The disk of an OVA appliance to read: 1 for the first its OVF lists (the\ndefault), 2 for the second, ..."},
	{names: []string{"-ict", "--input-checksum-type"}, dest: "checksum_type", metavar: "SINGLE_INPUT_CHECKSUM_TYPE", complete: completeAlgorithm,
		help: "The checksum type that should be used to validate the input image if set\n(a Python hashlib name: md5, sha1, sha256, sha512, sha3_256, blake2b, ...)."},
	{names: []string{"-ic", "--input-checksum"}, dest: "checksum", metavar: "SINGLE_INPUT_CHECKSUM",
		help: "The checksum that should be used to validate the input image if set (hex)."},
	{names: []string{"-icbs", "--input-checksum-buffer-size"}, dest: "checksum_buffer_size", metavar: "SINGLE_INPUT_CHECKSUM_BUFFER_SIZE",
		help: "The buffer size that is used to read the input image when calculating the\nchecksum value. (default: 65536)"},
	{names: []string{"-icrb", "--input-checksum-read-bytes"}, dest: "checksum_read_bytes", metavar: "SINGLE_INPUT_CHECKSUM_READ_BYTES",
		help: "The amount of bytes that should be read from the input image to be used to\ncalculate the expected checksum value. (default: the whole file)"},
	{names: []string{"--input-checksum-file"}, dest: "checksum_file", metavar: "URL_OR_PATH", complete: completeFile,
		help: "A checksum file (SHA256SUMS, CHECKSUM: GNU \"HEX  NAME\" or BSD\n\"SHA256 (NAME) = HEX\" lines) that lists the input's checksum under its file\nname; instead of -ic. -ict, when given, picks the algorithm."},
	{names: []string{"--input-checksum-signature"}, dest: "checksum_signature", metavar: "URL_OR_PATH", complete: completeFile,
		help: "A detached OpenPGP signature (.gpg, .sig, .asc) of the checksum file."},
	{names: []string{"--input-checksum-key"}, dest: "checksum_key", metavar: "PATH_OR_URL", complete: completeFile,
		help: "The OpenPGP public key that must have signed the checksum file (with\n--input-checksum-signature, or a clear-signed checksum file without it)."},
	{names: []string{"--cache-dir"}, dest: "cache_dir", metavar: "DIR", complete: completeDir,
		help: "Where downloads are cached. (default: $GVI_CACHE_DIR, else\n$XDG_CACHE_HOME/gen-vm-image or ~/.cache/gen-vm-image)"},
	{names: []string{"-od", "--output-directory"}, dest: "output_directory", metavar: "SINGLE_OUTPUT_DIRECTORY", complete: completeDir,
		help: "The path to the output directory where the image will be saved.\n(default: generated-images)"},
	{names: []string{"-of", "--output-format"}, dest: "output_format", metavar: "SINGLE_OUTPUT_FORMAT", complete: completeWritable,
		help: outputFormatHelp("The format of the output image")},
	formatOptionsOption, compressOption,
	{names: []string{"-V", "--version"}, dest: "version", metavar: "SINGLE_VERSION",
		help: "The version of the image that is generated; the file is NAME-VERSION.FORMAT."},
	{names: []string{"--overwrite"}, dest: "overwrite",
		help: "Replace an existing image. Without it an existing image is kept and the\nrun succeeds without doing anything."},
	{names: []string{"--allow-shrink"}, dest: "allow_shrink",
		help: "Allow a size below the input's virtual size; the data beyond it is lost."},
	noSyncOption,
	downloadOptions[0], downloadOptions[1],
	insecureOption,
	verboseOption, quietOption,
}

func singleCommand() command {
	return command{
		name:    "single",
		summary: "Generate a single Virtual Machine Image",
		description: `Generate a single Virtual Machine Image: a blank image of SIZE, or one based
on an input image (a local file, a URL downloaded once into the cache, or a
containerDisk in an OCI registry) that is verified against a checksum,
converted to the output format and resized to SIZE. The image is written to OUTPUT_DIRECTORY/NAME[-VERSION].FORMAT under a
temporary name and renamed into place only when complete and checked.`,
		args: []positional{
			{name: "name", help: "The name of the image that will be generated."},
			{name: "size", help: "The size of the image that will be generated: a number of bytes with an optional suffix B, K, M, G, T, P or E (powers of 1024), e.g. 20G."},
		},
		options: singleOptions,
		epilog: `The result is printed as JSON: on stdout on success, on stderr on failure,
and the exit code is its return_code (see the README for the table).
`,
		run: runSingle,
	}
}

func runSingle(ctx context.Context, e env, p *parsed) int {
	c := singleCommand()
	err := checkInputOptions(p)
	if err != nil {
		return c.fail(e, err)
	}
	spec := genvm.Spec{
		Name:            p.positionals[0],
		Size:            p.positionals[1],
		Version:         p.values["version"],
		Format:          p.values["output_format"],
		OutputDirectory: p.values["output_directory"],
		Overwrite:       p.switches["overwrite"],
		AllowShrink:     p.switches["allow_shrink"],
		Compress:        p.switches["compress"],
	}
	verbose := p.switches["verbose"]
	if spec.FormatOptions, err = parseFormatOptions(p); err != nil {
		return respond(e, jsonproto.NewResponse("", nil, verbose, err))
	}
	if in, ok := p.values["input"]; ok && in == "" {
		return respond(e, jsonproto.NewResponse("", nil, verbose, genvm.Errorf(genvm.CodeMissingAttribute, nil,
			"Missing attribute: -i/--input is empty (an unset variable in a script?); leave -i out for a blank image")))
	}
	if in := p.values["input"]; in != "" {
		spec.Input = genvm.NewInput(in)
		spec.Input.Format = p.values["input_format"]
		spec.Input.Disk, _ = intOption(p, "input_disk") // checked by checkInputOptions
		if p.values["checksum"] != "" || p.values["checksum_type"] != "" || p.values["checksum_file"] != "" ||
			p.values["checksum_signature"] != "" || p.values["checksum_key"] != "" {
			c := &checksum.Spec{Type: p.values["checksum_type"], Value: p.values["checksum"], File: p.values["checksum_file"],
				Signature: p.values["checksum_signature"], Key: p.values["checksum_key"]}
			c.BufferSize, _ = intOption(p, "checksum_buffer_size") // checked by checkInputOptions
			n, _ := intOption(p, "checksum_read_bytes")
			c.ReadBytes = int64(n)
			spec.Input.Checksum = c
		}
	}
	opts, stop, err := runOptions(e, p)
	if err != nil {
		stop()
		return respond(e, jsonproto.NewResponse("", nil, verbose, err))
	}
	res, err := genvm.Generate(ctx, spec, opts...)
	stop()
	notify(e, p, res.Notices)
	return respond(e, jsonproto.NewResponse("", res.Messages, verbose, err))
}

// inputOptions apply to an input; checksumTuning to a checksum.
var (
	inputOptions   = []string{"input_format", "input_disk", "checksum_type", "checksum", "checksum_buffer_size", "checksum_read_bytes", "checksum_file", "checksum_signature", "checksum_key"}
	checksumTuning = []string{"checksum_buffer_size", "checksum_read_bytes"}
)

// checkInputOptions refuses, as argparse refuses a bad value, options that
// have nothing to apply to and numbers that are not numbers: they are
// mistakes on the command line, not in the image.
func checkInputOptions(p *parsed) error {
	_, hasInput := p.values["input"]
	hasChecksum := p.values["checksum"] != "" || p.values["checksum_file"] != ""
	for _, dest := range inputOptions {
		if _, ok := p.values[dest]; !ok {
			continue
		}
		spelled := spelling(singleOptions, dest)
		if !hasInput {
			return fmt.Errorf("argument %s: there is no input (-i) to apply it to", spelled)
		}
		if dest == "input_disk" {
			if _, err := intOption(p, dest); err != nil {
				return fmt.Errorf("argument %s: %v", spelled, err)
			}
		}
		if slices.Contains(checksumTuning, dest) {
			if !hasChecksum {
				return fmt.Errorf("argument %s: it tunes a checksum, and none is given (-ic or --input-checksum-file)", spelled)
			}
			if _, err := intOption(p, dest); err != nil {
				return fmt.Errorf("argument %s: %v", spelled, err)
			}
		}
	}
	return nil
}

// spelling is an option's names as argparse lists them in messages.
func spelling(opts []option, dest string) string {
	for _, o := range opts {
		if o.dest == dest {
			return strings.Join(o.names, "/")
		}
	}
	return dest
}

// intOption reads an optional positive integer option.
func intOption(p *parsed, dest string) (int, error) {
	v, ok := p.values[dest]
	if !ok {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("invalid value %q: must be a positive whole number", v)
	}
	return n, nil
}
