package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	genvm "github.com/ucphhpc/gen-vm-image-go"
	"github.com/ucphhpc/gen-vm-image-go/jsonproto"
)

var multipleOptions = []option{
	{names: []string{"-iod", "-od", "--output-directory"}, dest: "output_directory", metavar: "MULTIPLE_OUTPUT_DIRECTORY", complete: completeDir,
		help: "The path to the output directory where the images will be saved.\n(default: generated-images)"},
	{names: []string{"--overwrite"}, dest: "overwrite", help: "Whether the tool should overwrite existing image disks."},
	{names: []string{"--update"}, dest: "update",
		help: "Rebuild the images that are stale: whose spec (size, format, options,\ninput) or input (a file's bytes; a download the server changed) differs\nfrom what the directory's record (gen-vm-image.json) says they were built\nfrom. The others are left as they are. Without it an image there is kept,\nstale or not; -v says which are stale and why."},
	{names: []string{"--dry-run", "-n"}, dest: "dry_run",
		help: "Write and download nothing (a HEAD request per URL at most); print what\na run would do with each image (build, keep, rebuild because ..., up to\ndate), its input and whether it is cached, its path, virtual size and\nexpected space on disk, and the total against the free space."},
	{names: []string{"--no-space-check"}, dest: "no_space_check",
		help: "Start even when the images to build clearly cannot fit in the output\ndirectory's free space (refused by default, with code 3)."},
	{names: []string{"-j", "--jobs"}, dest: "jobs", metavar: "N",
		help: "Build N images at once (default: the number of cores). They share the\ncores: one pool of conversion workers serves them all, and an image\nwaiting for its download holds no job."},
	{names: []string{"--fail-fast"}, dest: "fail_fast",
		help: "Stop at the first image that fails, as the Python tool does. By default\nevery image that can be built is built and every failure is reported."},
	{names: []string{"--allow-shrink"}, dest: "allow_shrink",
		help: "Allow sizes below an input's virtual size; the data beyond them is lost."},
	{names: []string{"--cache-dir"}, dest: "cache_dir", metavar: "DIR", complete: completeDir,
		help: "Where downloads are cached. (default: $GVI_CACHE_DIR, else\n$XDG_CACHE_HOME/gen-vm-image or ~/.cache/gen-vm-image)"},
	noSyncOption,
	downloadOptions[0], downloadOptions[1],
	{names: []string{"--push"}, dest: "push", metavar: "PREFIX",
		help: "Push every image, once built (or kept), to PREFIX/NAME:VERSION (NAME:latest without a version) as a KubeVirt containerDisk, e.g. --push registry.example.org/vm-images. Names, versions and formats that cannot be pushed are refused before anything is built."},
	platformOption, insecureOption,
	{names: []string{"--shard"}, dest: "shard", metavar: "I/N|auto",
		help: "Build only shard I of N (counting from 0): the images whose keys hash to it, so that the tasks of a job array share an architecture, each image built by exactly one. auto takes I and N from a Slurm job array (SLURM_ARRAY_TASK_ID, _MIN, _COUNT) or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX, with --shards)."},
	{names: []string{"--shards"}, dest: "shards", metavar: "N",
		help: "The number of shards, for --shard auto in a Kubernetes Indexed Job (its completions)."},
	verboseOption, quietOption,
}

func multipleCommand() command {
	return command{
		name:    "multiple",
		summary: "Generate multiple Virtual Machine Images from an architecture file",
		description: `Generate every image that a YAML architecture file declares. The whole file is
validated first, and every problem is reported at once with its line number.`,
		args: []positional{{name: "architecture_path", help: "The path to the architecture file that defines the images that should be generated.", complete: completeFile},
			{name: "key", help: "Build only the images of these keys (default: every image of the file).", optional: true, many: true}},
		options: multipleOptions,
		epilog: `The architecture file:

  owner: <string>                 # required
  images:                         # required
    <key>:
      name: <string>              # required
      size: <string>              # required: 20G, 512M, ...
      version: <string|number>    # optional: NAME-VERSION.FORMAT
      format: <string>            # optional: FORMAT (below)
      input:                      # optional: the image to base this one on
        path: <string>            # a local file, or
        url: <url> | [<url>, ...] # a download (a list: mirrors, in order),
        oci: <reference>          # or a KubeVirt containerDisk:
                                  #   REGISTRY/REPO:TAG or REPO@sha256:...
        format: <string>          # optional: must agree with the content
        checksum: {type: sha256, value: <hex>,
                   buffer_size: <int>, read_bytes: <int>}
        # or the checksum from a published checksum file, optionally signed:
        # checksum: {file: <url|path>, type: <optional>,
        #            signature: <url|path>, key: <path|url>}

FORMAT is one of:
  ` + writableFormats(true) + `.

The result is printed as JSON: on stdout on success, on stderr on failure, with
the return code of the first failure as the exit code.
`,
		run: runMultiple,
	}
}

func runMultiple(ctx context.Context, e env, p *parsed) int {
	verbose := p.switches["verbose"]
	push, pushing := p.values["push"]
	if _, ok := p.values["platform"]; ok && !pushing {
		return multipleCommand().fail(e, errors.New("argument --platform: it says what pushed images declare, and there is no --push"))
	}
	if pushing && push == "" {
		return respond(e, jsonproto.NewResponse("", nil, verbose, genvm.Errorf(genvm.CodeMissingAttribute, nil,
			"Missing attribute: --push is empty (an unset variable in a script?); give REGISTRY/PREFIX, or leave --push out")))
	}
	created, err := sourceDateEpoch()
	if err != nil && pushing {
		return respond(e, jsonproto.NewResponse("", nil, verbose, err))
	}
	a, err := genvm.LoadArchitecture(p.positionals[0])
	if err != nil {
		return respond(e, jsonproto.NewResponse("", nil, verbose, err))
	}
	shard, err := shardOf(p, os.Getenv)
	if err != nil {
		return respond(e, jsonproto.NewResponse("", nil, verbose, err))
	}
	opts, stop, err := runOptionsFor(e, p, true)
	if err != nil {
		stop()
		return respond(e, jsonproto.NewResponse("", nil, verbose, err))
	}
	spec := genvm.BuildSpec{
		Architecture:    a,
		OutputDirectory: p.values["output_directory"],
		Overwrite:       p.switches["overwrite"],
		Update:          p.switches["update"],
		AllowShrink:     p.switches["allow_shrink"],
		Push:            push,
		PushPlatform:    p.values["platform"],
		PushCreated:     created,
		Keys:            p.positionals[1:],
		Shard:           shard,
	}
	if p.switches["dry_run"] {
		stop()
		return dryRun(ctx, e, p, spec, opts)
	}
	res, err := genvm.Build(ctx, spec, opts...)
	stop()
	notify(e, p, res.Notices)
	if e.progress && !p.switches["quiet"] && len(res.Images) > 0 {
		fmt.Fprint(e.stderr, summaryTable(res, newFleetProgress(e.stderr).width()-1))
	}
	return respond(e, jsonproto.NewResponse(res.Summary, res.Messages, verbose, err))
}

// shardOf reads --shard and --shards.
func shardOf(p *parsed, getenv func(string) string) (genvm.Shard, error) {
	value, sharding := p.values["shard"]
	count := 0
	if v, ok := p.values["shards"]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 {
			return genvm.Shard{}, genvm.Errorf(genvm.CodeInvalidAttribute, nil, "Invalid --shards %q: give the number of shards (the job's completions), at least 1", v)
		}
		if !sharding {
			return genvm.Shard{}, genvm.Errorf(genvm.CodeInvalidAttribute, nil, "Invalid --shards %s without --shard: add --shard auto (in a Kubernetes Indexed Job) or --shard I/N", v)
		}
		count = n
	}
	if !sharding {
		return genvm.Shard{}, nil
	}
	return genvm.ParseShard(strings.TrimSpace(value), count, getenv)
}

// dryRun prints what a run of spec would do: the plan's lines on stderr
// (unless -q) and in the JSON result's messages, whatever -v says.
func dryRun(ctx context.Context, e env, p *parsed, spec genvm.BuildSpec, opts []genvm.Option) int {
	plan, err := genvm.Plan(ctx, spec, opts...)
	if err != nil {
		return respond(e, jsonproto.NewResponse("", nil, p.switches["verbose"], err))
	}
	lines := plan.Lines()
	if spec.Shard.Count > 1 {
		lines = append([]string{fmt.Sprintf("This task builds %s: %d of the architecture's %d images", spec.Shard, len(plan.Images), len(spec.Architecture.Images))}, lines...)
	}
	if !p.switches["quiet"] {
		for _, l := range lines {
			fmt.Fprintln(e.stderr, l)
		}
	}
	c := plan.Counts()
	var parts []string
	for _, a := range []genvm.Action{genvm.ActionBuild, genvm.ActionRebuild, genvm.ActionKeep, genvm.ActionUpToDate, genvm.ActionFail} {
		if c[a] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", a, c[a]))
		}
	}
	summary := "Dry run, nothing written: " + strings.Join(parts, ", ") + ". " + lines[len(lines)-1]
	if plan.Free >= 0 && plan.Needed > plan.Free {
		summary += " (a run would refuse to start, with code 3, unless --no-space-check)"
	}
	return respond(e, jsonproto.NewResponse(summary, lines, true, nil))
}
