package genvm

import (
	"net/http"

	"github.com/ucphhpc/gen-vm-image-go/convert"
	"github.com/ucphhpc/gen-vm-image-go/fetch"
	"github.com/ucphhpc/gen-vm-image-go/internal/filelock"
	"github.com/ucphhpc/gen-vm-image-go/publish/oci"
)

type options struct {
	progress func(Event)
	noSync   bool
	download []fetch.Option // download limits; none: fetch's defaults
	lockMode LockMode       // how the record's lock is taken (the cache's is in download)
	cacheDir string         // "": fetch.DefaultCacheDir()
	failFast bool
	jobs     int           // images built at once by Build; 0: the cores
	pool     *convert.Pool // the conversion workers a build's images share
	// insecureRegistry allows registries over plain HTTP; registryTransport,
	// when set, carries registry requests.
	insecureRegistry  bool
	registryTransport http.RoundTripper
	// index and count place an image in a build, for its events.
	index, count int
	// afterVerify, for tests, runs between an input's checksum and its
	// use.
	afterVerify func(path string)
	// beforePublish, for tests, runs once an image is checked, just before
	// it is put in place: where an interruption no longer stops it.
	beforePublish func(path string)
	// input gathers, while one image is generated, what the record says of
	// its input (nil outside generate).
	input *inputNote
	// noSpaceCheck: Build starts even when its images clearly cannot fit;
	// freeSpace, when set, replaces the file system's answer (tests).
	noSpaceCheck bool
	freeSpace    func(dir string) (int64, bool)
	// key is the image's key in a build, for the record ("": its name).
	key string
}

// Option says how Generate, Build, Convert and Push run (see "Specs and
// options" in the package documentation).
type Option func(*options)

func newOptions(opts []Option) *options {
	o := &options{}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// WithProgress has fn called with progress events. fn must be quick; it is
// called from the goroutine doing the work: in a Build, from several at
// once (Event.Index tells the images apart).
func WithProgress(fn func(Event)) Option { return func(o *options) { o.progress = fn } }

// WithoutSync skips the fsync that makes each image durable before it is
// renamed into place, as qemu-img convert does by default (its "unsafe"
// cache mode). It saves the time the disk takes to write the image, but
// after a crash or power loss an image may exist under its final name with
// data missing: for builds that are thrown away on a crash anyway.
func WithoutSync() Option { return func(o *options) { o.noSync = true } }

// WithMaxDownloadSize gives up a download larger than n bytes (0: no
// limit; default fetch.DefaultMaxSize, 128 GiB).
func WithMaxDownloadSize(n int64) Option {
	return func(o *options) { o.download = append(o.download, fetch.WithMaxSize(n)) }
}

// WithMinDownloadRate gives up a connection that receives less than n
// bytes per second over a minute (0: no minimum; default
// fetch.DefaultMinRate, 1 KiB/s); it is resumed a few times, then the
// download fails.
func WithMinDownloadRate(n int64) Option {
	return func(o *options) { o.download = append(o.download, fetch.WithMinRate(n, 0)) }
}

// LockMode is how processes sharing a download cache (and, on a shared
// file system, the tasks of a job array on several nodes) take turns:
// LockAuto (flock, or O_EXCL lock files with stale-lock takeover on NFS,
// Lustre, CephFS, GPFS, BeeGFS and SMB), LockFlock or LockFile.
type LockMode = filelock.Mode

const (
	LockAuto  = filelock.Auto
	LockFlock = filelock.Flock
	LockFile  = filelock.Exclusive
)

// ParseLockMode reads a LockMode as GVI_LOCK_MODE spells it: auto, flock
// or file.
func ParseLockMode(s string) (LockMode, error) {
	m, err := filelock.ParseMode(s)
	if err != nil {
		return m, Errorf(CodeInvalidAttribute, err, "Invalid GVI_LOCK_MODE: %v", err)
	}
	return m, nil
}

// WithLockMode sets how the download cache is locked (default LockAuto).
func WithLockMode(m LockMode) Option {
	return func(o *options) {
		o.lockMode = m
		o.download = append(o.download, fetch.WithLockMode(m))
	}
}

// WithCacheDir keeps downloaded inputs in dir instead of
// fetch.DefaultCacheDir() ($GVI_CACHE_DIR, else the user's cache
// directory); "" keeps the default.
func WithCacheDir(dir string) Option { return func(o *options) { o.cacheDir = dir } }

// WithFailFast makes Build stop at the first image that fails, as the
// Python tool does. Without it every image that can be built is built.
func WithFailFast() Option { return func(o *options) { o.failFast = true } }

// WithInsecureRegistry allows registries that speak plain HTTP, for oci://
// inputs and pushes. Certificates are still verified where TLS is used: a
// registry with a private CA is trusted through SSL_CERT_FILE, or
// WithRegistryTransport.
func WithInsecureRegistry() Option { return func(o *options) { o.insecureRegistry = true } }

// WithRegistryTransport sends the requests to registries through rt (one
// that trusts a private CA, say); plain HTTP is still refused without
// WithInsecureRegistry.
func WithRegistryTransport(rt http.RoundTripper) Option {
	return func(o *options) { o.registryTransport = rt }
}

// registryOptions are package oci's options for a registry request of
// image (an output file name, for progress events) at stage.
func (o *options) registryOptions(image, stage string) []oci.Option {
	opts := []oci.Option{oci.WithUserAgent("gen-vm-image/" + Version)}
	if o.insecureRegistry {
		opts = append(opts, oci.WithInsecure())
	}
	if o.registryTransport != nil {
		opts = append(opts, oci.WithTransport(o.registryTransport))
	}
	if o.progress != nil && stage != "" {
		opts = append(opts, oci.WithProgress(func(p oci.Progress) {
			o.emit(Event{Image: image, Stage: stage, Done: p.Done, Total: p.Total, DataTotal: -1})
		}))
	}
	return opts
}

func (o *options) emit(e Event) {
	if o.progress != nil {
		e.Index, e.Count = o.index, o.count
		o.progress(e)
	}
}

// WithoutSpaceCheck lets Build start when the images it would build
// clearly cannot fit in the output directory's free space (see Plan),
// which it otherwise refuses (code 3) before anything is written.
func WithoutSpaceCheck() Option { return func(o *options) { o.noSpaceCheck = true } }

// WithFreeSpace has Build and Plan take the free space of a directory from
// fn instead of the file system (to test, or to keep a margin); fn returns
// false when it cannot tell.
func WithFreeSpace(fn func(dir string) (int64, bool)) Option {
	return func(o *options) { o.freeSpace = fn }
}
