package genvm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ucphhpc/gen-vm-image-go/arch"
	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/fetch"
	"github.com/ucphhpc/gen-vm-image-go/internal/safefile"
	"github.com/ucphhpc/gen-vm-image-go/record"
	"github.com/ucphhpc/gen-vm-image-go/size"
)

// The plan says, before anything is built, what a run does with each image
// and why, from the output directory's record (package record): build it
// (it is not there), keep it (it is there), rebuild it (--overwrite, or
// --update and it is stale) or leave it (--update and it is up to date).
// An image is stale when it is not the one its spec and input would give
// now: not in the record, another file than the one recorded, another
// spec (size, format, options, input named), or another input (a local
// file's size and time, then its digest; a download's cached digest and
// what its server says to a HEAD request). It also estimates what the
// images to build take on disk, against the free space.

// Action is what a run does with an image.
type Action string

// The actions.
const (
	ActionBuild    Action = "build"      // not there
	ActionKeep     Action = "keep"       // there, and kept (without --overwrite and --update)
	ActionRebuild  Action = "rebuild"    // --overwrite, or --update and stale
	ActionUpToDate Action = "up to date" // --update, and the record says it is current
	ActionFail     Action = "fail"       // its spec cannot work
)

// PlannedImage is what a run would do with one image.
type PlannedImage struct {
	Key    string
	Path   string
	Action Action
	// Stale says the image there is not the one its spec and input give
	// now, and Why says how (or why it is rebuilt).
	Stale bool
	Why   string
	// Input names the input ("" for a blank image); InputState says where
	// it is: a local file, cached, to download (and how big).
	Input, InputState string
	VirtualSize       int64
	// Expected is what the image is estimated to take on disk (the input's
	// data and the format's tables, as qemu-img measure reckons; a raw
	// image counts its data only, as it is sparse); -1 when unknown (an
	// input not downloaded yet whose size the server does not say).
	Expected int64
	Err      error // ActionFail: why
}

// BuildPlan is what a run of a BuildSpec would do.
type BuildPlan struct {
	Directory string
	Images    []PlannedImage
	Needed    int64 // Expected, summed over the images to build and rebuild
	Unknown   int   // images to build whose Expected is unknown
	Free      int64 // free space in Directory's file system; -1 unknown

	byKey map[string]*PlannedImage
}

// Plan says what Build would do with spec, without writing, downloading
// or building anything: the record of the output directory is read, local
// inputs are looked at (their data extents, for the space estimate),
// downloads are looked up in the cache and their servers asked with one
// HEAD request each.
func Plan(ctx context.Context, spec BuildSpec, opts ...Option) (*BuildPlan, error) {
	o := newOptions(opts)
	images, err := selectImages(spec.Architecture, spec.Keys, spec.Shard)
	if err != nil {
		return nil, err
	}
	return planImages(ctx, spec, images, o, true), nil
}

// planImages plans images; head asks the servers of downloads whether
// the cached copies are current (a dry run, or --update).
func planImages(ctx context.Context, b BuildSpec, images []arch.Image, o *options, head bool) *BuildPlan {
	dir := b.OutputDirectory
	if dir == "" {
		dir = DefaultOutputDirectory
	}
	p := &BuildPlan{Directory: dir, Free: -1, byKey: map[string]*PlannedImage{}}
	m, err := record.Read(dir)
	if err != nil {
		m = nil // unreadable: every image there is unrecorded
	}
	pl := &planner{ctx: ctx, o: o, head: head, manifest: m, peeks: map[string]*fetch.Peek{}}
	for _, im := range images {
		pi := pl.assess(im.Key, SpecFor(im, b), b.Update)
		p.Images = append(p.Images, pi)
	}
	for i := range p.Images {
		pi := &p.Images[i]
		p.byKey[pi.Key] = pi
		if pi.Action == ActionBuild || pi.Action == ActionRebuild {
			if pi.Expected < 0 {
				p.Unknown++
			} else {
				p.Needed += pi.Expected
			}
		}
	}
	freeSpace := o.freeSpace
	if freeSpace == nil {
		freeSpace = fetch.FreeSpace
	}
	if free, ok := freeSpace(existingParent(dir)); ok {
		p.Free = free
	}
	return p
}

// existingParent is dir, or its nearest ancestor that exists: where the
// images will be, once dir is created.
func existingParent(dir string) string {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || d == filepath.Dir(d) {
			return d
		}
	}
}

// checkSpace refuses a run whose images clearly cannot fit: the estimate
// of those to build is more than the free space.
func (p *BuildPlan) checkSpace() error {
	if p.Free < 0 || p.Needed <= p.Free {
		return nil
	}
	abs, _ := filepath.Abs(p.Directory)
	return newError(CodeCreateFailed, nil,
		"Not enough space in %s: the images to build need about %s (%d bytes), and %s (%d bytes) is free; free some space, build fewer images (multiple ARCH.yml KEY...), or use --no-space-check to try anyway",
		abs, size.Format(p.Needed), p.Needed, size.Format(p.Free), p.Free)
}

// Lines are the plan as a person reads it: one line per image, then the
// total.
func (p *BuildPlan) Lines() []string {
	var lines []string
	for _, pi := range p.Images {
		if pi.Err != nil {
			lines = append(lines, fmt.Sprintf("%s: fail: %v", pi.Key, pi.Err))
			continue
		}
		what := string(pi.Action)
		switch {
		case pi.Why != "" && pi.Action == ActionRebuild:
			what += " because " + pi.Why
		case pi.Stale:
			what += ", stale: " + pi.Why + " (--update rebuilds it)"
		case pi.Action == ActionKeep:
			what += " (it exists; --overwrite rebuilds it)"
		}
		in := "blank"
		if pi.Input != "" {
			in = pi.Input + " (" + pi.InputState + ")"
		}
		space := "unknown"
		if pi.Expected >= 0 {
			space = size.Format(pi.Expected)
		}
		line := fmt.Sprintf("%s: %s; %s, virtual size %s", pi.Key, what, pi.Path, size.Format(pi.VirtualSize))
		if pi.Action == ActionBuild || pi.Action == ActionRebuild {
			line += ", about " + space + " on disk"
		}
		lines = append(lines, line+"; input: "+in)
	}
	free := "unknown"
	if p.Free >= 0 {
		free = size.Format(p.Free)
	}
	total := fmt.Sprintf("Total: about %s to write in %s, %s free", size.Format(p.Needed), p.Directory, free)
	if p.Unknown > 0 {
		total += fmt.Sprintf(" (and %d images of unknown size)", p.Unknown)
	}
	if p.Free >= 0 && p.Needed > p.Free {
		total += ": they do not fit"
	}
	return append(lines, total)
}

// Counts says how many images take each action.
func (p *BuildPlan) Counts() map[Action]int {
	c := map[Action]int{}
	for _, pi := range p.Images {
		c[pi.Action]++
	}
	return c
}

// planner assesses the images of one plan, sharing what it learns of
// inputs.
type planner struct {
	ctx      context.Context
	o        *options
	head     bool
	manifest *record.Manifest
	peeks    map[string]*fetch.Peek
	hashed   map[string]string // local inputs read because their size or time changed
}

func (pl *planner) peek(in *Input) *fetch.Peek {
	if p, ok := pl.peeks[in.URL]; ok {
		return p
	}
	req := fetch.Request{URLs: []string{in.URL}, CacheDir: pl.o.cacheDir}
	if in.Checksum != nil {
		req.Checksum = *in.Checksum
	}
	p, err := fetch.PeekURL(pl.ctx, req, pl.head, fetchOptions(pl.o, "", func(string, ...any) {})...)
	if err != nil {
		p = &fetch.Peek{Size: -1, ImageSize: -1}
	}
	pl.peeks[in.URL] = p
	return p
}

// assess plans one image.
func (pl *planner) assess(key string, spec Spec, update bool) PlannedImage {
	pi := PlannedImage{Key: key, Expected: -1}
	format := spec.Format
	if format == "" {
		format = arch.DefaultFormat
	}
	requested, err := validateSpec(spec)
	if err == nil {
		var f disk.Format
		var opt disk.CreateOptions
		f, opt, pi.VirtualSize, _, err = outputFormat(format, spec.FormatOptions, spec.Compress, requested)
		if err == nil {
			pl.assessValid(&pi, spec, f, opt, update)
			return pi
		}
	}
	pi.Action, pi.Err = ActionFail, err
	return pi
}

func (pl *planner) assessValid(pi *PlannedImage, spec Spec, f disk.Format, opt disk.CreateOptions, update bool) {
	pi.Path = OutputPath(spec.OutputDirectory, spec.Name, spec.Version, f.Name)
	if in := spec.Input; in != nil {
		pi.Input, pi.InputState = inputName(in), pl.inputState(in)
	}
	st, err := os.Lstat(pi.Path)
	switch {
	case err != nil:
		pi.Action = ActionBuild
	case spec.Overwrite:
		pi.Action, pi.Why = ActionRebuild, "--overwrite was given"
	default:
		pi.Why = pl.staleness(spec, f, pi.VirtualSize, st)
		pi.Stale = pi.Why != ""
		switch {
		case update && pi.Stale:
			pi.Action = ActionRebuild
		case update:
			pi.Action = ActionUpToDate
		default:
			pi.Action = ActionKeep
		}
	}
	if pi.Action == ActionBuild || pi.Action == ActionRebuild {
		pi.Expected = pl.expected(spec, f, opt, pi.VirtualSize)
	}
}

func (pl *planner) inputState(in *Input) string {
	switch {
	case in.URL != "":
		p := pl.peek(in)
		switch {
		case p.Cached && p.Changed:
			return "cached; the server has a new version"
		case p.Cached:
			return "cached"
		case p.Size >= 0:
			return "to download, " + size.Format(p.Size)
		}
		return "to download"
	case in.OCI != "":
		return "from a registry"
	}
	return "local file"
}

// staleness says how the image at the output path (st) differs from the
// one spec would give now; "" when the record says it is that one.
func (pl *planner) staleness(spec Spec, f disk.Format, virtualSize int64, st os.FileInfo) string {
	base := filepath.Base(OutputPath(spec.OutputDirectory, spec.Name, spec.Version, f.Name))
	e := pl.manifest.Lookup(base)
	switch {
	case e == nil:
		return "it is not in the record (" + record.ManifestName + ")"
	case !st.Mode().IsRegular() || st.Size() != e.FileSize:
		return fmt.Sprintf("the file is not the one recorded (%d bytes, not %d)", st.Size(), e.FileSize)
	case e.SpecDigest != specDigest(spec, f.Name, virtualSize):
		return specChange(e, spec, virtualSize)
	}
	return pl.inputChange(spec.Input, e.Input)
}

// specChange names what of the spec changed since e was recorded.
func specChange(e *record.Image, spec Spec, virtualSize int64) string {
	var changes []string
	if e.VirtualSize != virtualSize {
		changes = append(changes, fmt.Sprintf("its size is %s, not %s", size.Format(virtualSize), size.Format(e.VirtualSize)))
	}
	if fmt.Sprint(e.Options) != fmt.Sprint(nonEmpty(spec.FormatOptions)) || e.Compress != spec.Compress {
		changes = append(changes, "its format options changed")
	}
	was, now := "", ""
	if e.Input != nil {
		was = e.Input.Path + e.Input.URL + e.Input.OCI
	}
	if spec.Input != nil {
		now = inputName(spec.Input)
	}
	if was != now && !(spec.Input != nil && spec.Input.URL != "" && e.Input != nil && slicesContains(spec.Input.Mirrors, e.Input.URL)) {
		changes = append(changes, fmt.Sprintf("its input is %q, not %q", now, was))
	}
	if len(changes) == 0 {
		changes = append(changes, "its spec changed (input format or checksum)")
	}
	return strings.Join(changes, "; ")
}

func nonEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func slicesContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// inputChange says how the input differs from the one recorded; "" when
// it is the same, or nobody can tell.
func (pl *planner) inputChange(in *Input, was *record.Input) string {
	if in == nil {
		return ""
	}
	if was == nil || was.SHA256 == "" && in.OCI == "" {
		return "the record holds no digest of its input"
	}
	switch {
	case in.Path != "":
		st, err := os.Stat(in.Path)
		if err != nil {
			return fmt.Sprintf("its input %s cannot be read (%v)", in.Path, err)
		}
		if st.Size() == was.Size && st.ModTime().UTC().Format(time.RFC3339Nano) == was.ModTime {
			return ""
		}
		sum, err := pl.hashPath(in.Path)
		if err != nil {
			return fmt.Sprintf("its input %s cannot be read (%v)", in.Path, err)
		}
		if sum != was.SHA256 {
			return fmt.Sprintf("its input %s changed (SHA-256 %s, recorded %s)", in.Path, short(sum), short(was.SHA256))
		}
	case in.URL != "":
		p := pl.peek(in)
		switch {
		case p.Cached && p.SHA256 != was.SHA256:
			return fmt.Sprintf("its input %s changed (the cache holds a download with SHA-256 %s, recorded %s)", in.URL, short(p.SHA256), short(was.SHA256))
		case p.Changed:
			return fmt.Sprintf("its input %s changed (the server has a new version)", in.URL)
		}
	}
	return ""
}

func (pl *planner) hashPath(path string) (string, error) {
	if sum, ok := pl.hashed[path]; ok {
		return sum, nil
	}
	f, err := safefile.OpenInput(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sum, _, err := record.HashFile(pl.ctx, f)
	if err != nil {
		return "", err
	}
	if pl.hashed == nil {
		pl.hashed = map[string]string{}
	}
	pl.hashed[path] = sum
	return sum, nil
}

func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12] + "…"
	}
	return sum
}

// expected estimates the space the image takes: the data of its input
// that fits in its virtual size, in whole blocks of the format, and, for a
// format with tables (not a raw file), an entry of 8 bytes per block and
// a few blocks of headers — what qemu-img measure reckons for qcow2.
func (pl *planner) expected(spec Spec, f disk.Format, opt disk.CreateOptions, virtualSize int64) int64 {
	block := max(f.BlockSize(opt), 512)
	var tables int64
	if !f.Generic {
		tables = (virtualSize+block-1)/block*8 + 4*block
	}
	in := spec.Input
	if in == nil {
		return tables
	}
	path := in.Path
	if in.URL != "" {
		p := pl.peek(in)
		if !p.Cached {
			if p.Size < 0 {
				return -1
			}
			return min(p.Size, virtualSize) + tables // what is downloaded, as an image: at most
		}
		path = p.Path
	}
	if in.OCI != "" {
		return -1
	}
	data, err := inputData(path, in.Format, virtualSize)
	if err != nil {
		return -1
	}
	return (data+block-1)/block*block + tables
}

// inputData is the bytes of data (not holes or zero clusters) the input
// image at path holds below limit, as its own format maps them.
func inputData(path, declared string, limit int64) (int64, error) {
	f, err := safefile.OpenInput(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	format, _, err := detectFormat(f, st.Size(), declared)
	if err != nil {
		return min(st.Size(), limit), nil // compressed, say: its size bounds nothing, but it is a guess
	}
	def, _ := disk.Lookup(format)
	if def.Open == nil {
		return min(st.Size(), limit), nil
	}
	img, err := def.Open(f, st.Size(), disk.OpenOptions{})
	if err != nil {
		return 0, err
	}
	defer img.Close()
	n := min(img.Size(), limit)
	extents, err := img.Extents(0, n)
	if err != nil {
		return 0, err
	}
	var data int64
	for _, e := range extents {
		if !e.Zero {
			data += e.Length
		}
	}
	return data, nil
}

// apply makes j's spec follow the plan: an image --update rebuilds is
// overwritten.
func (p *BuildPlan) apply(j *job) {
	if pi := p.lookup(j.image.Key); pi != nil && pi.Action == ActionRebuild {
		j.spec.Overwrite = true
	}
}

// explain says, once j is decided, why it is kept, left or rebuilt.
func (p *BuildPlan) explain(j *job) {
	pi := p.lookup(j.image.Key)
	if pi == nil || j.target == nil {
		return
	}
	res := &j.result.Result
	say, _ := reporters(res)
	switch {
	case pi.Action == ActionUpToDate && j.target.keep:
		// Said for -v only: up to date is what --update expects.
		if n := len(res.Notices); n > 0 {
			res.Notices = res.Notices[:n-1]
		}
		if n := len(res.Messages); n > 0 {
			res.Messages = res.Messages[:n-1]
		}
		say("The output image: %s is up to date: the record has its spec and input as they are now", pi.Path)
	case pi.Action == ActionKeep && pi.Stale:
		say("The output image: %s is stale: %s; it is kept (use --update to rebuild the stale images)", pi.Path, pi.Why)
	case pi.Action == ActionRebuild && pi.Stale:
		say("The output image: %s is stale: %s; rebuilding it (--update)", pi.Path, pi.Why)
	}
}

func (p *BuildPlan) lookup(key string) *PlannedImage {
	if p == nil {
		return nil
	}
	return p.byKey[key]
}
