// Package fetch downloads input images: once, verified while they download,
// into a cache that never holds a partial or unverified file under a
// complete file's name.
//
//   - http and https, TLS verified, through net/http with connect, TLS,
//     response-header and idle-read timeouts (no whole-body timeout: a big
//     image on a slow link is not an error).
//   - The checksum (any hashlib algorithm; the read-bytes rule of the
//     Python tool) is computed in the same pass that writes the file.
//     It may come from a published checksum (SUMS) file, whose OpenPGP
//     signature (detached or clear-signed) can be checked against a key
//     (package checksum; fetch reads the files it names).
//   - Downloads land in a cache directory (DefaultCacheDir), keyed by URL,
//     under a .partial name, and are renamed only when complete and
//     verified. A cached copy is reused when it matches the checksum, or,
//     with no checksum, when the server confirms it is unchanged (ETag or
//     Last-Modified). A file lock per URL keeps two processes apart.
//   - A dropped connection resumes with a Range request, in the same run or
//     the next, and the hash goes on from a saved state; transient failures
//     (reset, timeout, 5xx, a short body) are retried with backoff, a
//     bounded number of times; a server that ignores Range is restarted
//     cleanly.
//   - gzip, xz, bzip2 and zstd files (known by their magic bytes) are
//     decompressed while they download, into a sparse file beside the
//     download in the cache; the checksum applies to the file as published.
//   - Several URLs are mirrors of one file, tried in order.
//   - A file inside a layer of a container image (FetchLayer: the disk of a
//     KubeVirt containerDisk) is taken straight out of the layer's stream,
//     verified against the layer's digest, and cached by that digest.
package fetch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ucphhpc/gen-vm-image-go/checksum"
	"github.com/ucphhpc/gen-vm-image-go/internal/filelock"
	"github.com/ucphhpc/gen-vm-image-go/internal/location"
)

// Request is one file to fetch.
type Request struct {
	URLs []string // the file's URL and its mirrors, tried in order
	// Checksum verifies the file as published: a value, or a checksum
	// file that lists the digest under the URL's file name (its OpenPGP
	// signature checked when a key is given). The zero Spec verifies
	// nothing; a cached copy is then reused only when the server says it
	// is unchanged.
	Checksum checksum.Spec
	CacheDir string // "" means DefaultCacheDir()
}

// Result is what Fetch produced. Fetch returns it on failure too, holding
// the messages gathered until then.
type Result struct {
	// Path is the verified local file: the decompressed copy when the
	// file was published compressed, else the download itself. Both live
	// in the cache and belong to it: do not modify them.
	Path string
	// File is Path, opened for reading under the cache lock, so that a
	// later download of the same URL cannot swap it before it is read. The
	// caller closes it.
	File        *os.File
	Published   string // the file as published (== Path when not compressed)
	URL         string // the URL it came from
	Algorithm   string // the verified checksum's algorithm; "" when none was given
	Digest      string // the verified digest of the published file, lowercase hex
	Compression string // "gzip", "xz", "bzip2", "zstd" or ""
	Size        int64  // bytes as published
	// SHA256 is the download's SHA-256 as published, lowercase hex:
	// always computed, whatever checksum was asked for (Fetch only).
	SHA256   string
	CacheHit bool   // no download was needed
	Member   string // FetchLayer: the file's name in the layer (disk/NAME)
	Messages []string
}

// Progress is reported while a download runs.
type Progress struct {
	URL   string
	Done  int64 // bytes of the published file on disk so far
	Total int64 // its size; -1 when the server does not say
}

// Option tunes Fetch and ResolveChecksum.
type Option func(*options)

type options struct {
	client      *http.Client
	progress    func(Progress)
	log         func(string)
	retries     int
	backoff     time.Duration
	maxBackoff  time.Duration
	idleTimeout time.Duration
	userAgent   string
	checkpoint  int64
	maxSize     int64         // bytes; 0: no limit
	minRate     int64         // bytes per second over rateWindow; 0: no minimum
	rateWindow  time.Duration // how long a download may stay below minRate
	messages    *[]string
	lockMode    filelock.Mode
}

// lock takes the cache's lock on name (the URL's or the file's), calling
// waiting once when another process holds it.
func (o *options) lock(ctx context.Context, name string, waiting func()) (*filelock.Lock, error) {
	return filelock.Acquire(ctx, name, filelock.Options{Mode: o.lockMode, Waiting: waiting})
}

// Defaults.
const (
	DefaultRetries     = 5
	DefaultBackoff     = time.Second
	DefaultIdleTimeout = 60 * time.Second
	maxBackoff         = 30 * time.Second
	// maxResumes bounds the retries after which the download had grown:
	// a link that drops every few MiB still finishes, an endless one does not.
	maxResumes = 100
	// checkpointBytes is how often the partial download's state is saved,
	// so that even a killed process resumes from there.
	checkpointBytes = 64 << 20
	// DefaultMaxSize bounds a download (and a Content-Length we are told)
	// unless WithMaxSize says otherwise: far above any cloud image, far
	// below a disk that an endless body would fill.
	DefaultMaxSize = 128 << 30
	// DefaultMinRate over DefaultRateWindow: a server that trickles more
	// slowly than this is given up on (and resumed), not waited for.
	DefaultMinRate    = 1 << 10
	DefaultRateWindow = 60 * time.Second
	// maxRedirects is what browsers and net/http allow.
	maxRedirects = 10
)

// WithHTTPClient uses c instead of the default client (to trust another CA,
// say). Its Timeout should be 0: the idle timeout is applied per read.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// WithLockMode chooses how processes sharing the cache take turns on an
// entry (default filelock.Auto: flock, or lock files on a shared file
// system whose flock may be local to a node).
func WithLockMode(m filelock.Mode) Option { return func(o *options) { o.lockMode = m } }

// WithProgress has fn called as bytes arrive; it must be quick.
func WithProgress(fn func(Progress)) Option { return func(o *options) { o.progress = fn } }

// WithLog has fn called with each message as it happens (cache hit,
// resumed at byte N, retried after ...); they are in Result.Messages too.
func WithLog(fn func(string)) Option { return func(o *options) { o.log = fn } }

// WithRetries sets how many times a transient failure is retried when it
// made no progress (default 5), and the first wait, which doubles each
// time up to 30s (default 1s).
func WithRetries(n int, backoff time.Duration) Option {
	return func(o *options) { o.retries, o.backoff = max(n, 0), max(backoff, 0) }
}

// WithIdleTimeout sets how long a download may receive nothing before the
// connection is given up and resumed (default 60s).
func WithIdleTimeout(d time.Duration) Option { return func(o *options) { o.idleTimeout = d } }

// WithMaxSize bounds a download at maxSize bytes (0: no limit; default
// DefaultMaxSize). A larger one fails for good, before it starts when the
// server says its size.
func WithMaxSize(maxSize int64) Option {
	return func(o *options) { o.maxSize = max(maxSize, 0) }
}

// WithMinRate gives up a connection that receives less than minRate bytes
// per second over a window (0: no minimum; default DefaultMinRate; a
// window of 0 means DefaultRateWindow). It is resumed, as a stalled one
// is, a bounded number of times.
func WithMinRate(minRate int64, window time.Duration) Option {
	return func(o *options) {
		o.minRate = max(minRate, 0)
		if window > 0 {
			o.rateWindow = window
		}
	}
}

// WithUserAgent sets the User-Agent header (default "gen-vm-image").
func WithUserAgent(s string) Option { return func(o *options) { o.userAgent = s } }

func newOptions(opts []Option) *options {
	o := &options{
		retries:     DefaultRetries,
		backoff:     DefaultBackoff,
		maxBackoff:  maxBackoff,
		idleTimeout: DefaultIdleTimeout,
		userAgent:   "gen-vm-image",
		checkpoint:  checkpointBytes,
		maxSize:     DefaultMaxSize,
		minRate:     DefaultMinRate,
		rateWindow:  DefaultRateWindow,
	}
	for _, opt := range opts {
		opt(o)
	}
	if o.client == nil {
		o.client = newClient()
	}
	// Our redirect policy, on a copy of the caller's client.
	c := *o.client
	c.CheckRedirect = o.checkRedirect
	o.client = &c
	if o.idleTimeout <= 0 {
		o.idleTimeout = DefaultIdleTimeout
	}
	return o
}

// newClient is net/http with timeouts on every step but the body, whose
// reads are bounded by the idle timeout instead.
func newClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
		DisableCompression:    true, // the bytes as published, for the checksum and for Range
		ReadBufferSize:        256 << 10,
	}}
}

func (o *options) say(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if o.messages != nil {
		*o.messages = append(*o.messages, msg)
	}
	if o.log != nil {
		o.log(msg)
	}
}

// Fetch returns a verified local copy of the file req names, downloading
// it only when the cache has no usable copy. Errors are *Error.
func Fetch(ctx context.Context, req Request, opts ...Option) (*Result, error) {
	o := newOptions(opts)
	res := &Result{}
	o.messages = &res.Messages
	err := fetch(ctx, req, o, res)
	return res, err
}

func fetch(ctx context.Context, req Request, o *options, res *Result) error {
	if len(req.URLs) == 0 {
		return newError(KindInvalid, "", nil, "Nothing to download: no URL given")
	}
	for _, u := range req.URLs {
		if err := location.CheckURL(u); err != nil {
			return newError(KindDownload, u, err, "Failed to download %s: %v", u, err)
		}
	}
	dir := req.CacheDir
	if dir == "" {
		var err error
		if dir, err = DefaultCacheDir(); err != nil {
			return newError(KindCache, req.URLs[0], err, "Failed to create the download cache: %v", err)
		}
	}
	downloads := filepath.Join(dir, "downloads")
	if err := os.MkdirAll(downloads, 0o755); err != nil {
		return newError(KindCache, req.URLs[0], err, "Failed to create the download cache %s: %v", downloads, err)
	}
	if err := checkCacheDir(downloads); err != nil {
		return newError(KindCache, req.URLs[0], err, "Refusing the download cache %s: %v", downloads, err)
	}
	want, err := resolveChecksum(ctx, o, req.Checksum, fileNames(req.URLs), req.URLs[0])
	if err != nil {
		return err
	}

	// With a checksum, any mirror's verified copy will do.
	if want != nil && len(req.URLs) > 1 {
		for _, u := range req.URLs {
			if hit, err := cachedCopy(ctx, o, newEntry(downloads, u), want, res); hit || err != nil {
				return err
			}
		}
	}
	var errs []*Error
	for i, u := range req.URLs {
		err := fetchURL(ctx, o, newEntry(downloads, u), want, res)
		if err == nil {
			return nil
		}
		var fe *Error
		if !errors.As(err, &fe) {
			fe = newError(KindDownload, u, err, "Failed to download %s: %v", u, err)
		}
		if ctx.Err() != nil || fe.Kind == KindCache || fe.Kind == KindInvalid {
			return fe
		}
		errs = append(errs, fe)
		if i+1 < len(req.URLs) {
			o.say("%s; trying the next mirror: %s", fe.Msg, req.URLs[i+1])
		}
	}
	return mirrorsFailed(errs)
}

// mirrorsFailed reports every mirror's failure; a checksum mismatch on any
// of them makes it a checksum error.
func mirrorsFailed(errs []*Error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	var msgs []string
	first := errs[0]
	for _, e := range errs {
		msgs = append(msgs, e.Msg)
		if e.Kind == KindChecksum && first.Kind != KindChecksum {
			first = e
		}
	}
	return &Error{Kind: first.Kind, URL: first.URL, Err: first,
		Msg: fmt.Sprintf("All %d mirrors failed: %s", len(errs), strings.Join(msgs, "; "))}
}

// fileNames are the names a checksum file may list the file under: the
// last element of each URL's path.
func fileNames(urls []string) []string {
	var names []string
	for _, u := range urls {
		if n := fileName(u); n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// fetchURL gets one URL: from the cache when it may, else by downloading.
// It holds the URL's lock throughout.
func fetchURL(ctx context.Context, o *options, e entry, want *checksum.Expected, res *Result) error {
	lock, err := o.lock(ctx, e.lock(), func() {
		o.say("Waiting for another gen-vm-image that is downloading %s", e.url)
	})
	if err != nil {
		if ctx.Err() != nil {
			return newError(KindDownload, e.url, errors.Join(ErrInterrupted, err), "Interrupted while waiting to download %s", e.url)
		}
		return newError(KindCache, e.url, err, "Failed to lock the download cache for %s: %v", e.url, err)
	}
	defer lock.Release()

	var first *reply
	if m := e.loadMeta(); m != nil {
		if want != nil {
			hit, err := useCachedCopy(ctx, o, e, m, want, res)
			if hit || err != nil {
				return err
			}
		} else {
			hit, r, err := revalidate(ctx, o, e, m, res)
			if hit || err != nil {
				return err
			}
			first = r
		}
	}
	d := &download{o: o, e: e, want: want, res: res}
	return d.run(ctx, first)
}

// cachedCopy looks for a verified copy of e under its lock, without
// downloading.
func cachedCopy(ctx context.Context, o *options, e entry, want *checksum.Expected, res *Result) (bool, error) {
	if _, err := os.Lstat(e.meta()); err != nil {
		return false, nil
	}
	lock, err := o.lock(ctx, e.lock(), func() {
		o.say("Waiting for another gen-vm-image that is downloading %s", e.url)
	})
	if err != nil {
		if ctx.Err() != nil {
			return false, newError(KindDownload, e.url, errors.Join(ErrInterrupted, err), "Interrupted while waiting to download %s", e.url)
		}
		return false, nil
	}
	defer lock.Release()
	m := e.loadMeta()
	if m == nil {
		return false, nil
	}
	return useCachedCopy(ctx, o, e, m, want, res)
}

// useCachedCopy reuses a cached copy when its checksum matches (and its
// files are whole: useCached).
func useCachedCopy(ctx context.Context, o *options, e entry, m *entryMeta, want *checksum.Expected, res *Result) (bool, error) {
	hit, err := useCached(ctx, o, e, m, want, res)
	if hit {
		o.say("Cache hit: the cached copy of %s at %s matches %s: %s %s", e.url, e.download(), want.Source, want.Algorithm, res.Digest)
	}
	return hit, err
}

// revalidate asks the server whether the cached copy is still current,
// with the validators it gave us. A 304 is a hit; a 200 is the new file,
// returned for the download to read.
func revalidate(ctx context.Context, o *options, e entry, m *entryMeta, res *Result) (bool, *reply, error) {
	if m.ETag == "" && m.LastModified == "" {
		o.say("The cached copy of %s cannot be confirmed unchanged (the server gave no ETag or Last-Modified) and no checksum is given; downloading it again", e.url)
		return false, nil, nil
	}
	h := http.Header{}
	if m.ETag != "" {
		h.Set("If-None-Match", m.ETag)
	}
	if m.LastModified != "" {
		h.Set("If-Modified-Since", m.LastModified)
	}
	var r *reply
	err := retry(ctx, o, e.url, func() error {
		var err error
		r, err = o.get(ctx, e.url, h)
		if err == nil && transientStatus(r.resp.StatusCode) {
			r.close()
			return retryable(r.resp)
		}
		return err
	})
	if err != nil {
		return false, nil, downloadError(ctx, e.url, err, "Failed to check whether the cached copy of %s is current")
	}
	switch r.resp.StatusCode {
	case http.StatusNotModified:
		r.close()
		validator := "Last-Modified " + m.LastModified
		if m.ETag != "" {
			validator = "ETag " + m.ETag
		}
		hit, err := useCached(ctx, o, e, m, nil, res)
		if hit {
			o.say("Cache hit: the server confirms %s is unchanged (%s); using %s", e.url, validator, e.download())
		}
		return hit, nil, err
	case http.StatusOK:
		o.say("The server has a new version of %s; downloading it", e.url)
		return false, r, nil
	}
	r.close()
	err = statusError(r.resp)
	return false, nil, newError(KindDownload, e.url, err, "Failed to download %s: %v", e.url, err)
}

// downloadError words a failed request as "Failed to download URL: what".
func downloadError(ctx context.Context, u string, err error, lead string) error {
	var fe *Error
	if errors.As(err, &fe) {
		return fe
	}
	if ctx.Err() != nil {
		return newError(KindDownload, u, errors.Join(ErrInterrupted, err), "Interrupted while downloading %s", u)
	}
	return newError(KindDownload, u, err, lead+": %v", u, err)
}

// retry calls fn until it succeeds, fails for good, or has failed
// transiently o.retries+1 times, waiting with backoff in between.
func retry(ctx context.Context, o *options, u string, fn func() error) error {
	for attempt := 0; ; attempt++ {
		err := fn()
		if err == nil || !isTransient(err) || attempt >= o.retries || ctx.Err() != nil {
			if err != nil && isTransient(err) && attempt > 0 {
				return fmt.Errorf("%w (gave up after %d attempts)", err, attempt+1)
			}
			return err
		}
		delay := o.delay(attempt+1, err)
		o.say("Requesting %s: %v; retrying in %v (retry %d of %d)", u, err, delay, attempt+1, o.retries)
		if err := sleep(ctx, delay); err != nil {
			return err
		}
	}
}

// delay is the wait before retry number n (1, 2, ...): the server's
// Retry-After when it gave one, else backoff doubling, capped.
func (o *options) delay(n int, err error) time.Duration {
	var t *transientError
	if errors.As(err, &t) && t.after > 0 {
		return min(t.after, o.maxBackoff)
	}
	d := o.backoff
	for i := 1; i < n && d < o.maxBackoff; i++ {
		d *= 2
	}
	return min(d, o.maxBackoff)
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
