package genvm

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/ucphhpc/gen-vm-image-go/arch"
	"github.com/ucphhpc/gen-vm-image-go/convert"
)

// How a build runs: the images of an architecture are decided one by one
// (planBuild: cheap, nothing read or written), then built by a fixed
// number of jobs (runJobs). The inputs the images need are fetched by
// their own goroutines, each input once (sharedInput), so that an image
// waiting for a download holds no job; a job takes the first image, in
// the file's order, whose input is ready. The conversions of all the jobs
// share one pool of workers and one memory budget (convert.Pool).

// job is one image of a build: what deciding it settled, and its outcome.
type job struct {
	index  int // 1-based, in the build's order
	image  arch.Image
	spec   Spec
	target *target      // nil when deciding failed
	input  *sharedInput // nil for a blank or kept image
	opts   options      // the build's, placing the image for its events
	result ImageResult
	// ran: the image was decided or built (its result counts); a job
	// that a cancellation kept from starting has not.
	ran bool
}

// needsRun says whether the job has work left after deciding: a build,
// or a push of the image kept.
func (j *job) needsRun(push bool) bool {
	return j.result.Err == nil && j.target != nil && (!j.target.keep || push)
}

// planBuild decides every image, in order: its output, whether it is
// built or kept, and which input it needs (shared with the images before
// it that need the same one).
func planBuild(b BuildSpec, images []arch.Image, o *options, plan *BuildPlan) []*job {
	jobs := make([]*job, len(images))
	inputs := map[string]*sharedInput{}
	for i, im := range images {
		j := &job{index: i + 1, image: im, spec: SpecFor(im, b), opts: *o}
		j.opts.index, j.opts.count = i+1, len(images)
		j.opts.key = im.Key
		j.result.Key = im.Key
		plan.apply(j)
		j.target, j.result.Err = decide(j.spec, &j.result.Result)
		plan.explain(j)
		j.ran = true
		jobs[i] = j
		if j.result.Err != nil || j.target.keep || j.spec.Input == nil {
			continue
		}
		key := inputKey(j.spec.Input)
		in := inputs[key]
		if in == nil {
			in = &sharedInput{in: j.spec.Input, owner: j, ready: make(chan struct{}), note: &inputNote{}}
			inputs[key] = in
		}
		in.users++
		j.input = in
		j.opts.input = in.note // what the record says of the input, learnt once
	}
	return jobs
}

// inputKey identifies an input: images with the same key read the same
// verified bytes.
func inputKey(in *Input) string {
	k, _ := json.Marshal(struct {
		Path, URL, OCI string
		Mirrors        []string
		Checksum       any
	}{filepath.Clean(in.Path), in.URL, in.OCI, in.Mirrors, in.Checksum})
	return string(k)
}

// sharedInput is one input of a build, fetched (or verified) once for all
// the images that need it. Its file is read by each of them at once (a
// ReadAt is safe for that) and closed when the last is done.
type sharedInput struct {
	in    *Input
	owner *job // the first image that needs it: its events and messages
	users int  // images that still need the file

	ready    chan struct{} // closed when file or err is set
	file     *os.File
	size     int64
	err      error
	messages []string
	note     *inputNote // filled by fetch, through the owner's options

	mu sync.Mutex
}

// fetch resolves the input: download, verify, decompress, as the owner
// would alone.
func (s *sharedInput) fetch(ctx context.Context) {
	defer close(s.ready)
	say := func(format string, args ...any) { s.messages = append(s.messages, sprintf(format, args...)) }
	o := &s.owner.opts
	s.file, s.size, s.err = resolveInput(ctx, s.in, o.cacheDir, filepath.Base(s.owner.target.path), o, say)
}

// source is the inputSource of image j: the shared file, which j gives
// back when it is done with it.
func (s *sharedInput) source(j *job) inputSource {
	return func(say func(string, ...any)) (*os.File, int64, func(), error) {
		<-s.ready
		if j == s.owner {
			for _, m := range s.messages {
				say("%s", m)
			}
		} else {
			say("Input %s: fetched and verified once, for image %s, and read again here", inputName(s.in), s.owner.image.Key)
		}
		if s.err != nil {
			s.release()
			return nil, 0, nil, s.err
		}
		return s.file, s.size, s.release, nil
	}
}

// release gives the file back; the last user closes it.
func (s *sharedInput) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users--
	if s.users == 0 && s.file != nil {
		s.file.Close()
		s.file = nil
	}
}

// close closes the file whatever the users left (those a cancellation
// kept from starting).
func (s *sharedInput) close() {
	<-s.ready
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
}

func inputName(in *Input) string {
	switch {
	case in.URL != "":
		return in.URL
	case in.OCI != "":
		return in.OCI
	}
	return in.Path
}

// errFailFast is why the other images stop when one fails under
// WithFailFast.
var errFailFast = errors.New("another image failed and --fail-fast stops the build")

// poolMemory bounds the chunks in flight of every conversion of a build
// together (convert's own default, for one conversion, is 32 MiB).
const poolMemory = 48 << 20

// runJobs builds the jobs that need it with o.jobs at once and returns the
// error the build reports: the first failure in the file's order, or,
// under WithFailFast, the one that stopped the build.
func runJobs(ctx context.Context, b BuildSpec, jobs []*job, o *options) error {
	n := o.jobs
	if n <= 0 {
		n = runtime.NumCPU()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	pool := convert.NewPool(runtime.GOMAXPROCS(0), poolMemory)
	defer pool.Close()

	var pending []*job
	var inputs []*sharedInput
	for _, j := range jobs {
		if !j.needsRun(b.Push != "") {
			j.emitEnd()
			continue
		}
		j.ran = false
		j.opts.pool = pool
		pending = append(pending, j)
		if j.input != nil && j.input.owner == j {
			inputs = append(inputs, j.input)
		}
	}

	var mu sync.Mutex
	wake := sync.NewCond(&mu)
	broadcast := func() { mu.Lock(); wake.Broadcast(); mu.Unlock() }
	stopWaking := context.AfterFunc(ctx, broadcast)
	defer stopWaking()

	// Fetchers: the inputs in the order of the images that first need
	// them, n downloads and n local files at once: a local file (verified,
	// perhaps decompressed) never waits behind a slow download.
	var fetchers sync.WaitGroup
	for _, remote := range []bool{true, false} {
		queue := make(chan *sharedInput, len(inputs))
		for _, in := range inputs {
			if (in.in.URL != "" || in.in.OCI != "") == remote {
				queue <- in
			}
		}
		close(queue)
		for range min(n, len(queue)) {
			fetchers.Go(func() {
				for in := range queue {
					in.fetch(ctx)
					broadcast()
				}
			})
		}
	}
	defer func() {
		for _, in := range inputs {
			in.close()
		}
	}()
	defer fetchers.Wait()

	// next takes the first pending image whose input is ready; nil when
	// none is left or the build is stopped.
	next := func() *job {
		mu.Lock()
		defer mu.Unlock()
		for {
			if ctx.Err() != nil || len(pending) == 0 {
				return nil
			}
			for i, j := range pending {
				if j.input == nil || isClosed(j.input.ready) {
					pending = append(pending[:i], pending[i+1:]...)
					return j
				}
			}
			wake.Wait()
		}
	}
	var failedFirst *job
	var workers sync.WaitGroup
	for range min(n, len(pending)) {
		workers.Go(func() {
			for j := next(); j != nil; j = next() {
				buildImage(ctx, b, j)
				j.emitEnd()
				mu.Lock()
				// An image that fails once the build was stopped was
				// stopped: it is not a failure of its own.
				j.ran = j.result.Err == nil || failedFirst == nil
				j.result.Stopped = j.result.Err != nil && ctx.Err() != nil
				if j.result.Err != nil && o.failFast && failedFirst == nil && ctx.Err() == nil {
					failedFirst = j
					cancel(errFailFast)
				}
				mu.Unlock()
			}
		})
	}
	workers.Wait()

	if failedFirst != nil {
		return failedFirst.result.Err
	}
	for _, j := range jobs {
		if j.ran && j.result.Err != nil {
			return j.result.Err
		}
	}
	for _, j := range jobs {
		if !j.ran {
			return newError(CodeCreateFailed, ctx.Err(), "Interrupted before image %s was built", j.image.Key)
		}
	}
	return nil
}

// emitEnd reports the end of the image: "done" (built, or kept and
// pushed), "kept" or "failed".
func (j *job) emitEnd() {
	stage := "done"
	switch {
	case j.result.Err != nil:
		stage = "failed"
	case !j.result.Created && j.result.Pushed == nil:
		stage = "kept"
	}
	j.opts.emit(Event{Image: filepath.Base(j.result.Path), Stage: stage, DataTotal: -1})
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// buildImage builds one decided image: its input (fetched already, or
// being fetched), the conversion, and the push, when the build pushes.
// It is the one place a build does anything to an image.
func buildImage(ctx context.Context, b BuildSpec, j *job) {
	ir := &j.result
	start := time.Now()
	defer func() { ir.Elapsed = time.Since(start) }()
	if !j.target.keep {
		var input inputSource
		if j.input != nil {
			input = j.input.source(j)
		}
		if ir.Err = makeImage(ctx, j.target, input, &j.opts, &ir.Result); ir.Err != nil {
			return
		}
	}
	if b.Push != "" {
		say, _ := reporters(&ir.Result)
		ps := PushSpec{File: ir.Path, Reference: PushReference(b.Push, j.image.Name, j.image.Version), Platform: b.PushPlatform, Created: b.PushCreated}
		ir.Pushed, ir.Err = push(ctx, ps, &j.opts, filepath.Base(ir.Path), say)
		if ir.Err == nil {
			ir.Err = recordPushed(ctx, &j.opts, &ir.Result, ir.Pushed)
		}
	}
}

// WithJobs builds n images of a Build at once (default: the number of
// cores). The jobs share the cores: one pool of conversion workers serves
// them all.
func WithJobs(n int) Option { return func(o *options) { o.jobs = n } }
