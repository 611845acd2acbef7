package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	genvm "github.com/ucphhpc/gen-vm-image-go"
	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/size"
)

// noSyncOption is the same switch for every command that writes images.
var noSyncOption = option{names: []string{"--no-sync"}, dest: "no_sync",
	help: "Do not wait for each image to reach the disk before it is\nrenamed into place (qemu-img's default). Faster on slow disks,\nbut after a crash or power loss an image may be there with data\nmissing: for throwaway builds."}

// The switches every command that writes images has.
var (
	verboseOption = option{names: []string{"--verbose", "-v"}, dest: "verbose", help: "Print verbose output."}
	quietOption   = option{names: []string{"--quiet", "-q"}, dest: "quiet",
		help: "Print nothing but the JSON result: no progress line, no notices."}
)

// The output format's own options, and compression (qemu-img's -o and -c).
var (
	formatOptionsOption = option{names: []string{"-o", "--format-options"}, dest: "format_options", metavar: "OPTIONS",
		help: "The output format's own options, as qemu-img -o takes them: KEY=VALUE[,KEY=VALUE...]. " + formatOptionsList()}
	compressOption = option{names: []string{"-c", "--compress"}, dest: "compress",
		help: "Store the data compressed, as qemu-img convert -c does (qcow2 clusters; streamOptimized VMDK grains), compressed on every core."}
)

// formatOptionsList names, for help, the options of each writable format.
func formatOptionsList() string {
	var parts []string
	for _, name := range disk.WritableFormats() {
		f, _ := disk.Lookup(name)
		var opts []string
		for _, o := range f.Options {
			s := o.Name
			if len(o.Values) > 0 {
				s += "=" + strings.Join(o.Values, "|")
			}
			opts = append(opts, s)
		}
		if len(opts) == 0 {
			opts = []string{"none"}
		}
		parts = append(parts, name+": "+strings.Join(opts, ", "))
	}
	return strings.Join(parts, "; ") + "."
}

// parseFormatOptions reads -o.
func parseFormatOptions(p *parsed) (map[string]string, error) {
	v, ok := p.values["format_options"]
	if !ok {
		return nil, nil
	}
	opts, err := disk.ParseOptions(v)
	if err != nil {
		return nil, genvm.Errorf(genvm.CodeInvalidAttribute, err, "Invalid -o %s: %v", v, err)
	}
	return opts, nil
}

// notify prints what the user should see without -v (an image kept, an
// unknown key in an architecture file) on stderr, unless -q.
func notify(e env, p *parsed, notices []string) {
	if p.switches["quiet"] {
		return
	}
	for _, n := range notices {
		fmt.Fprintf(e.stderr, "%s: notice: %s\n", prog, n)
	}
}

// downloadOptions bound the downloads of the commands that download.
var downloadOptions = []option{
	{names: []string{"--max-download-size"}, dest: "max_download_size", metavar: "SIZE",
		help: "Give up a download larger than SIZE (K, M, G, T suffixes; 0: no limit),\nbefore it starts when the server says its size. (default: 128G)"},
	{names: []string{"--min-download-rate"}, dest: "min_download_rate", metavar: "RATE",
		help: "Give up a connection that receives less than RATE bytes per second over\na minute (K, M suffixes; 0: no minimum); it is resumed a few times,\nthen the download fails. (default: 1K)"},
}

// downloadLimits reads the download options.
func downloadLimits(p *parsed) ([]genvm.Option, error) {
	var opts []genvm.Option
	for _, o := range []struct {
		dest, spelled string
		option        func(int64) genvm.Option
	}{
		{"max_download_size", "--max-download-size", genvm.WithMaxDownloadSize},
		{"min_download_rate", "--min-download-rate", genvm.WithMinDownloadRate},
	} {
		v, ok := p.values[o.dest]
		if !ok {
			continue
		}
		n, err := size.Parse(v)
		if err != nil {
			return nil, genvm.Errorf(genvm.CodeInvalidAttribute, err, "Invalid value %q for %s: %v", v, o.spelled, err)
		}
		opts = append(opts, o.option(n))
	}
	return opts, nil
}

// runOptions are the genvm options a command that writes images takes from
// its switches (those it has) and its terminal; stop ends the progress bar.
func runOptions(e env, p *parsed) (opts []genvm.Option, stop func(), err error) {
	return runOptionsFor(e, p, false)
}

// runOptionsFor is runOptions, for a build of several images at once
// (one progress line per image at work) when fleet is set.
func runOptionsFor(e env, p *parsed, fleet bool) (opts []genvm.Option, stop func(), err error) {
	stop = func() {}
	opts, err = downloadLimits(p)
	if err != nil {
		return nil, stop, err
	}
	switch {
	case !e.progress || p.switches["quiet"]:
	case fleet:
		lines := newFleetProgress(e.stderr)
		stop = lines.finish
		opts = append(opts, genvm.WithProgress(lines.update))
	default:
		bar := newProgressBar(e.stderr)
		stop = bar.finish
		opts = append(opts, genvm.WithProgress(bar.update))
	}
	if p.switches["no_sync"] {
		opts = append(opts, genvm.WithoutSync())
	}
	if v := os.Getenv("GVI_LOCK_MODE"); v != "" {
		mode, err := genvm.ParseLockMode(v)
		if err != nil {
			return nil, stop, err
		}
		opts = append(opts, genvm.WithLockMode(mode))
	}
	if dir := p.values["cache_dir"]; dir != "" {
		opts = append(opts, genvm.WithCacheDir(dir))
	}
	if v, ok := p.values["jobs"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, stop, genvm.Errorf(genvm.CodeInvalidAttribute, err, "Invalid value %q for --jobs: a number of images at once, 1 or more", v)
		}
		opts = append(opts, genvm.WithJobs(n))
	}
	if p.switches["no_space_check"] {
		opts = append(opts, genvm.WithoutSpaceCheck())
	}
	if p.switches["fail_fast"] {
		opts = append(opts, genvm.WithFailFast())
	}
	if p.switches["insecure"] {
		opts = append(opts, genvm.WithInsecureRegistry())
	}
	return opts, stop, nil
}
