package fetch

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/ucphhpc/gen-vm-image-go/internal/safefile"
	"github.com/ucphhpc/gen-vm-image-go/size"
)

// LayerRequest is a file to take out of a tar layer of a container image
// (an OCI or Docker image layer) as a registry publishes it: the one
// regular file in directory Dir of the layer.
type LayerRequest struct {
	// Digest is the layer's digest, sha256:HEX: what its bytes as
	// published must hash to, and the key of the file in the cache.
	Digest      string
	Size        int64  // the layer's size as published
	Compression string // "", "gzip" or "zstd"
	// Dir is the directory of the layer whose one regular file is wanted
	// ("disk" for a KubeVirt containerDisk).
	Dir string
	// Source names the layer in messages (oci://REGISTRY/REPO@sha256:...).
	Source string
	// Open starts the layer's download. Its errors are returned as they
	// are, wrapped in an *Error of KindDownload.
	Open     func(ctx context.Context) (io.ReadCloser, error)
	CacheDir string // "" means DefaultCacheDir()
}

// ErrNoMember: the layer has no regular file in the directory asked for
// (an *Error of KindNotImage wraps it). Another layer of the image may.
var ErrNoMember = errors.New("no file in the directory")

// layerMeta is layers/HEX.json: the file taken out of the layer and its
// image digest, which it must still have to be used again.
type layerMeta struct {
	Digest      string    `json:"digest"`
	Size        int64     `json:"size"`
	Compression string    `json:"compression,omitempty"`
	Dir         string    `json:"dir"`
	Member      string    `json:"member"`
	ImageSize   int64     `json:"image_size"`
	ImageDigest string    `json:"image_digest"`
	Source      string    `json:"source"` // where it was pulled from first; informative
	Fetched     time.Time `json:"fetched"`
}

// FetchLayer returns the file req names, from the cache when it has it
// whole, else taken straight out of the layer's stream: the layer is read
// once, hashed as it arrives, decompressed and untarred on the way, and
// the file is written sparsely into the cache, where it is kept only when
// the whole layer had the digest and the size asked for. No copy of the
// layer is ever stored. Result.Path and Result.File are the file; Member
// is its name in the layer. Errors are *Error; a layer without the file
// is ErrNoMember.
//
// The cache is keyed by the layer's digest (layers/HEX.image and
// HEX.json), under a lock per digest, so that processes sharing the cache
// take turns and pull a layer once.
func FetchLayer(ctx context.Context, req LayerRequest, opts ...Option) (*Result, error) {
	o := newOptions(opts)
	res := &Result{}
	o.messages = &res.Messages
	err := fetchLayer(ctx, req, o, res)
	return res, err
}

func fetchLayer(ctx context.Context, req LayerRequest, o *options, res *Result) error {
	hexDigest, ok := strings.CutPrefix(req.Digest, "sha256:")
	if !ok || len(hexDigest) != 64 || !isLowerHex(hexDigest) {
		return newError(KindInvalid, req.Source, nil, "Cannot fetch the layer %q of %s: only sha256 digests are verified", req.Digest, req.Source)
	}
	if req.Size < 0 || req.Open == nil || req.Dir == "" {
		return newError(KindInvalid, req.Source, nil, "Cannot fetch the layer %s of %s: incomplete request", req.Digest, req.Source)
	}
	switch req.Compression {
	case "", "gzip", "zstd":
	default:
		return newError(KindInvalid, req.Source, nil, "Cannot fetch the layer %s of %s: unknown compression %q", req.Digest, req.Source, req.Compression)
	}
	dir := req.CacheDir
	if dir == "" {
		var err error
		if dir, err = DefaultCacheDir(); err != nil {
			return newError(KindCache, req.Source, err, "Failed to create the download cache: %v", err)
		}
	}
	layers := filepath.Join(dir, "layers")
	if err := os.MkdirAll(layers, 0o755); err != nil {
		return newError(KindCache, req.Source, err, "Failed to create the download cache %s: %v", layers, err)
	}
	if err := checkCacheDir(layers); err != nil {
		return newError(KindCache, req.Source, err, "Refusing the download cache %s: %v", layers, err)
	}
	e := entry{url: req.Digest, base: filepath.Join(layers, hexDigest)}
	lock, err := o.lock(ctx, e.lock(), func() {
		o.say("Waiting for another gen-vm-image that is pulling the layer %s", req.Digest)
	})
	if err != nil {
		if ctx.Err() != nil {
			return newError(KindDownload, req.Source, errors.Join(ErrInterrupted, err), "Interrupted while waiting to pull the layer %s of %s", req.Digest, req.Source)
		}
		return newError(KindCache, req.Source, err, "Failed to lock the download cache for the layer %s: %v", req.Digest, err)
	}
	defer lock.Release()
	if hit, err := reuseLayer(ctx, o, e, req, res); hit || err != nil {
		return err
	}
	return pullLayer(ctx, o, e, req, res)
}

// reuseLayer uses the cached file when it was taken from this layer's
// directory and still has its image digest.
func reuseLayer(ctx context.Context, o *options, e entry, req LayerRequest, res *Result) (bool, error) {
	data, err := readSmall(e.meta())
	if err != nil {
		return false, nil
	}
	var m layerMeta
	if json.Unmarshal(data, &m) != nil || m.Digest != req.Digest || m.Dir != req.Dir || m.Member == "" || m.ImageSize < 0 {
		return false, nil
	}
	img, err := safefile.OpenOwned(e.image())
	if err != nil {
		return false, nil
	}
	if st, err := img.Stat(); err != nil || st.Size() != m.ImageSize {
		img.Close()
		e.removeComplete()
		return false, nil
	}
	got, err := imageDigestOf(ctx, img, m.ImageSize)
	if err != nil || got != m.ImageDigest {
		img.Close()
		if ctx.Err() != nil {
			return false, newError(KindChecksum, req.Source, errors.Join(ErrInterrupted, ctx.Err()), "Interrupted while checking the cached copy of %s", m.Member)
		}
		o.say("The cached copy of %s from the layer %s is damaged; pulling it again", m.Member, req.Digest)
		e.removeComplete()
		return false, nil
	}
	o.say("Cache hit: %s from the layer %s (pulled from %s) is cached whole at %s", m.Member, req.Digest, m.Source, e.image())
	*res = Result{Path: e.image(), File: img, Published: req.Source, URL: req.Source, Algorithm: "sha256", Digest: strings.TrimPrefix(req.Digest, "sha256:"),
		Compression: req.Compression, Size: req.Size, CacheHit: true, Member: m.Member, Messages: res.Messages}
	return true, nil
}

// layerStream is the layer's bytes as they arrive: counted, hashed, bounded
// one byte past the size the manifest gives (so a longer stream is told),
// watched by the idle timer. A read error is kept, so that what went wrong
// on the network is told from what is wrong in the bytes.
type layerStream struct {
	r      io.Reader
	hash   hash.Hash
	n      int64
	err    error
	onRead func(n int64)
}

func (s *layerStream) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.hash.Write(p[:n])
		s.n += int64(n)
		s.onRead(int64(n))
	}
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

// pullLayer reads the layer and keeps its file in the cache. The caller
// holds the entry's lock.
func pullLayer(ctx context.Context, o *options, e entry, req LayerRequest, res *Result) error {
	src := req.Source
	if o.maxSize > 0 && req.Size > o.maxSize {
		return newError(KindDownload, src, ErrTooLarge, "Failed to pull %s: its layer %s is %d bytes (%s), more than the limit of %s (--max-download-size)",
			src, req.Digest, req.Size, size.Format(req.Size), size.Format(o.maxSize))
	}
	started := time.Now()
	pullCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	body, err := req.Open(pullCtx)
	if err != nil {
		if ctx.Err() != nil {
			return newError(KindDownload, src, errors.Join(ErrInterrupted, err), "Interrupted while pulling %s", src)
		}
		return newError(KindDownload, src, err, "%v", err)
	}
	defer body.Close()
	idle := o.idleTimeout
	timer := time.AfterFunc(idle, func() { cancel(ErrIdleTimeout) })
	defer timer.Stop()
	raw := &layerStream{r: io.LimitReader(body, req.Size+1), hash: sha256.New()}
	raw.onRead = func(int64) {
		timer.Reset(idle)
		if o.progress != nil {
			o.progress(Progress{URL: src, Done: raw.n, Total: req.Size})
		}
	}
	x := &extraction{o: o, e: e, req: req}
	defer x.abort()
	x.run(raw)
	// What is left of the layer after the archive's end is read too: the
	// digest is of all of it.
	io.Copy(io.Discard, raw)
	x.finishWrite()

	// The bytes first: a layer that is not what was asked for is a digest
	// failure, whatever its tar looked like.
	got := hex.EncodeToString(raw.hash.Sum(nil))
	want := strings.TrimPrefix(req.Digest, "sha256:")
	switch {
	case ctx.Err() != nil:
		return newError(KindDownload, src, errors.Join(ErrInterrupted, ctx.Err()), "Interrupted while pulling %s (layer %s, %d of %d bytes)", src, req.Digest, raw.n, req.Size)
	case errors.Is(context.Cause(pullCtx), ErrIdleTimeout):
		return newError(KindDownload, src, ErrIdleTimeout, "Failed to pull %s: nothing was received for %v, after %d of the %d bytes of the layer %s", src, idle, raw.n, req.Size, req.Digest)
	case raw.n > req.Size:
		return newError(KindChecksum, src, &MismatchError{Algorithm: "size", Expected: fmt.Sprint(req.Size), Actual: fmt.Sprintf("more than %d", req.Size)},
			"The layer %s of %s is longer than the %d bytes its manifest gives: it is not the layer asked for; nothing was kept", req.Digest, src, req.Size)
	case raw.n == req.Size && got != want:
		return newError(KindChecksum, src, &MismatchError{Algorithm: "sha256", Expected: want, Actual: got},
			"The layer of %s does not match its digest: the registry sent bytes with the digest sha256:%s, not %s; nothing was kept", src, got, req.Digest)
	case raw.err != nil && raw.err != errStopped:
		msg, _ := describeNetError(raw.err)
		return newError(KindDownload, src, raw.err, "Failed to pull %s: %s, after %d of the %d bytes of the layer %s", src, msg, raw.n, req.Size, req.Digest)
	case x.err != nil:
		return x.err
	case raw.n < req.Size:
		return newError(KindDownload, src, ErrShortBody, "Failed to pull %s: the registry sent %d of the %d bytes of the layer %s", src, raw.n, req.Size, req.Digest)
	case x.member == "":
		return newError(KindNotImage, src, ErrNoMember, "The layer %s of %s has no file in /%s/", req.Digest, src, req.Dir)
	}
	return x.keep(src, started, raw.n, res)
}

// extraction takes the member out of the layer's tar stream into the
// cache's partial file: the tar is read on the caller's goroutine; the
// sparse writes and the image digest run on the consumer's.
type extraction struct {
	o   *options
	e   entry
	req LayerRequest

	member   string
	file     *os.File
	writer   *sparseWriter
	consumer *consumer
	mu       sync.Mutex
	writeErr error // the first failed write, from the consumer
	err      error // why the extraction failed, once the digest is known good
}

// errStopped marks a read that the extraction gave up on.
var errStopped = errors.New("extraction stopped")

func (x *extraction) run(raw *layerStream) {
	var in io.Reader = raw
	src, kind := x.req.Source, x.req.Compression
	switch kind {
	case "gzip":
		zr, err := gzip.NewReader(raw)
		if err != nil {
			x.err = newError(KindNotImage, src, err, "The layer %s of %s is not gzip data, as its media type says: %v", x.req.Digest, src, err)
			return
		}
		defer zr.Close()
		in = zr
	case "zstd":
		// A frame's window is what it says it is, up to the limit: a
		// hostile one must not make us allocate gigabytes.
		zr, err := zstd.NewReader(raw, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(64<<20))
		if err != nil {
			x.err = newError(KindNotImage, src, err, "The layer %s of %s: zstd: %v", x.req.Digest, src, err)
			return
		}
		defer zr.Close()
		in = zr
	}
	if kind != "" && x.o.maxSize > 0 {
		// A decompression bomb stops at the limit, whatever the tar says.
		in = &boundedReader{r: in, left: x.o.maxSize + 1<<20, err: fmt.Errorf("%w: the layer decompresses to more than the limit of %s (--max-download-size)", ErrTooLarge, size.Format(x.o.maxSize))}
	}
	tr := tar.NewReader(in)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			if errors.Is(err, ErrTooLarge) {
				x.err = newError(KindDownload, src, err, "Failed to pull %s: %v", src, err)
				return
			}
			x.err = newError(KindNotImage, src, err, "The layer %s of %s is not a tar archive that can be read (%v): not a containerDisk", x.req.Digest, src, err)
			return
		}
		name, ok := x.inDir(h)
		if !ok {
			continue
		}
		if x.member != "" {
			x.err = newError(KindNotImage, src, nil, "The layer %s of %s has more than one file in /%s/ (%s and %s): which one is the disk is not clear", x.req.Digest, src, x.req.Dir, x.member, name)
			return
		}
		x.member = name
		if x.o.maxSize > 0 && h.Size > x.o.maxSize {
			x.err = newError(KindDownload, src, ErrTooLarge, "Failed to pull %s: %s in its layer is %d bytes (%s), more than the limit of %s (--max-download-size)",
				src, name, h.Size, size.Format(h.Size), size.Format(x.o.maxSize))
			x.stop(raw)
			return
		}
		if err := x.copyMember(tr, h.Size); err != nil {
			x.err = err
			// A write that failed (a full cache) ends the pull; a member
			// that is cut short is reported once the layer's digest says
			// whether the registry sent what was asked for.
			var fe *Error
			if errors.As(err, &fe) && fe.Kind != KindNotImage {
				x.stop(raw)
			}
			return
		}
	}
}

// inDir reports whether h is a regular file directly in the wanted
// directory, and its clean name. Whiteouts (".wh." files of a layer that
// deletes files below it) are not files.
func (x *extraction) inDir(h *tar.Header) (string, bool) {
	if h.Typeflag != tar.TypeReg {
		return "", false
	}
	name := path.Clean("/" + h.Name)[1:]
	dir, base := path.Split(name)
	if strings.TrimSuffix(dir, "/") != x.req.Dir || base == "" || strings.HasPrefix(base, ".wh.") {
		return "", false
	}
	return name, true
}

// stop ends the reading of the layer early: what was found makes the rest
// useless (a member over the limit, a failed write).
func (x *extraction) stop(raw *layerStream) {
	raw.r = errReader{errStopped}
	if raw.err == nil {
		raw.err = errStopped
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// copyMember writes n bytes of the member into the partial file, sparsely,
// through the consumer.
func (x *extraction) copyMember(r io.Reader, n int64) error {
	src := x.req.Source
	path := x.e.imagePartial()
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return newError(KindCache, src, err, "Failed to remove an old partial copy %s: %v", path, err)
	}
	f, err := safefile.Create(path, 0o644)
	if err != nil {
		return newError(KindCache, src, err, "Failed to create %s in the cache: %v", path, err)
	}
	x.file = f
	x.writer = &sparseWriter{f: f, digest: newBlockDigester(), space: spaceGuard{dir: filepath.Dir(path)}}
	x.consumer = startConsumer(func(p []byte) {
		x.mu.Lock()
		failed := x.writeErr != nil
		x.mu.Unlock()
		if failed {
			return
		}
		if _, err := x.writer.Write(p); err != nil {
			x.mu.Lock()
			x.writeErr = err
			x.mu.Unlock()
		}
	})
	for left := n; left > 0; {
		if err := x.failedWrite(); err != nil {
			return err
		}
		buf := x.consumer.buffer()
		k, err := io.ReadFull(r, buf[:min(int64(len(buf)), left)])
		if k > 0 {
			x.consumer.submit(buf[:k])
		} else {
			x.consumer.release(buf)
		}
		left -= int64(k)
		if err != nil {
			if errors.Is(err, ErrTooLarge) {
				return newError(KindDownload, src, err, "Failed to pull %s: %v", src, err)
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("%s ends after %d of its %d bytes", x.member, n-left, n)
			}
			return newError(KindNotImage, src, err, "The layer %s of %s is damaged or cut short: %v", x.req.Digest, src, err)
		}
	}
	x.consumer.sync()
	return x.failedWrite()
}

func (x *extraction) failedWrite() error {
	x.mu.Lock()
	err := x.writeErr
	x.mu.Unlock()
	if err == nil {
		return nil
	}
	if !errors.Is(err, ErrNoSpace) {
		err = fmt.Errorf("writing %s: %w", x.e.imagePartial(), err)
	}
	return newError(KindCache, x.req.Source, err, "Failed to pull %s into the cache: %v", x.req.Source, err)
}

// finishWrite waits for the consumer.
func (x *extraction) finishWrite() {
	if x.consumer != nil {
		x.consumer.stop()
		x.consumer = nil
	}
}

// keep puts the verified file in place and records it.
func (x *extraction) keep(src string, started time.Time, layerBytes int64, res *Result) error {
	if err := x.failedWrite(); err != nil {
		return err
	}
	if err := x.writer.finish(); err != nil {
		return newError(KindCache, src, err, "Failed to write %s in the cache: %v", x.e.imagePartial(), err)
	}
	os.Remove(x.e.meta())
	if err := os.Rename(x.e.imagePartial(), x.e.image()); err != nil {
		return newError(KindCache, src, err, "Failed to put the pulled %s in place: %v", x.member, err)
	}
	// The file is handed on under its final name (the one messages give),
	// and only when that name is still the file that was written.
	if f, err := safefile.OpenOwned(x.e.image()); err == nil {
		if sameOpenFile(f, x.file) {
			x.file.Close()
			x.file = f
		} else {
			f.Close()
		}
	}
	m := layerMeta{Digest: x.req.Digest, Size: x.req.Size, Compression: x.req.Compression, Dir: x.req.Dir, Member: x.member,
		ImageSize: x.writer.off, ImageDigest: x.writer.digest.sum(), Source: src, Fetched: time.Now().UTC()}
	writeJSON(x.e.meta(), m) // without it the next run pulls again: no harm done
	el := time.Since(started)
	x.o.say("Pulled %s: the layer %s (%s) in %v (%s/s), verified; its %s (%s) is cached at %s", src, x.req.Digest, size.Format(layerBytes),
		el.Round(time.Millisecond), size.Format(int64(float64(layerBytes)/max(el.Seconds(), 1e-3))), x.member, size.Format(m.ImageSize), x.e.image())
	*res = Result{Path: x.e.image(), File: x.file, Published: src, URL: src, Algorithm: "sha256", Digest: strings.TrimPrefix(x.req.Digest, "sha256:"),
		Compression: x.req.Compression, Size: x.req.Size, Member: x.member, Messages: res.Messages}
	x.file = nil // the caller's now
	return nil
}

// sameOpenFile reports whether a and b are open on the same file.
func sameOpenFile(a, b *os.File) bool {
	sa, err1 := a.Stat()
	sb, err2 := b.Stat()
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// abort removes what a failed extraction wrote.
func (x *extraction) abort() {
	x.finishWrite()
	if x.file != nil {
		x.file.Close()
		os.Remove(x.e.imagePartial())
	}
}

// boundedReader fails with err once more than left bytes were read.
type boundedReader struct {
	r    io.Reader
	left int64
	err  error
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, b.err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}
