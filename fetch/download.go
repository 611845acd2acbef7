package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ucphhpc/gen-vm-image-go/checksum"
	"github.com/ucphhpc/gen-vm-image-go/internal/safefile"
	"github.com/ucphhpc/gen-vm-image-go/size"
)

// download fetches one URL into its cache entry's partial file, hashing and
// decompressing in the same pass, and puts the result in place when it is
// complete and verified. The caller holds the entry's lock.
type download struct {
	o    *options
	e    entry
	want *checksum.Expected // nil: nothing to verify
	res  *Result

	file               *os.File // e.partial()
	written            int64    // bytes of the published file in file (and hashed)
	total              int64    // its size; -1 while unknown
	etag, lastModified string
	sha                hash.Hash // SHA-256 of the whole file, always: recorded in KEY.json
	hash               hash.Hash // the checksum asked for; nil without want
	hw                 io.Writer // sha and hash (the latter fed only the first ReadBytes bytes)
	sink               *sink
	consumer           *consumer // feeds hw and sink off the download's goroutine
	space              spaceGuard
	saved              int64 // written when the state was last saved
	buf                []byte
	attempts           int
	resumed            bool // some bytes came from before a resume
	restarted          bool // a mismatch after a resume was downloaded again once
	started            time.Time
}

func (d *download) say(format string, args ...any) { d.o.say(format, args...) }

// errRestart: the whole file is to be downloaded again from byte 0.
var errRestart = errors.New("restart the download")

func (d *download) run(ctx context.Context, first *reply) (err error) {
	if err := d.open(ctx); err != nil {
		if first != nil {
			first.close()
		}
		return err
	}
	d.consumer = startConsumer(func(p []byte) {
		d.hw.Write(p)
		d.sink.write(p)
	})
	defer func() {
		d.consumer.stop()
		if err != nil {
			// A decompressed copy is rebuilt from the kept bytes on resume.
			d.sink.abort()
			d.file.Close()
			if d.written == 0 {
				d.e.removePartial()
			}
		}
	}()
	for {
		if err := d.transfer(ctx, first); err != nil {
			return err
		}
		first = nil
		if err := d.complete(); !errors.Is(err, errRestart) {
			return err
		}
	}
}

// strongValidator reports whether a resume can be checked against what
// the server says: a strong ETag, or a Last-Modified together with the
// length (a weak ETag, or a date alone, lets a changed file pass for the
// kept one: RFC 9110 13.1.5 wants the If-Range validator strong).
func strongValidator(etag, lastModified string, total int64) bool {
	return (etag != "" && !strings.HasPrefix(etag, "W/")) || (lastModified != "" && total >= 0)
}

// open opens the partial file and takes up what an earlier run left there,
// when it can be trusted: bytes from the same URL, with a strong validator
// a resume can be checked against, that still have the digest saved with
// them. The file is never written through a link or another name.
func (d *download) open(ctx context.Context) error {
	d.total = -1
	d.buf = make([]byte, chunkSize)
	d.started = time.Now()
	d.sink = newSink(d.e.imagePartial())
	d.space = spaceGuard{dir: filepath.Dir(d.e.partial())}
	d.newHash()
	f, _, err := safefile.OpenWritable(d.e.partial(), 0o644)
	if err != nil {
		return newError(KindCache, d.e.url, err, "Failed to create the download of %s in the cache: %v", d.e.url, err)
	}
	d.file = f
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return newError(KindCache, d.e.url, err, "Failed to read the partial download of %s: %v", d.e.url, err)
	}
	onDisk, kept := st.Size(), int64(0)
	state := d.e.loadState()
	if onDisk > 0 {
		why := ""
		switch {
		case state == nil:
			why = "there is no record of where they came from"
		case !strongValidator(state.ETag, state.LastModified, state.Total):
			why = "the server gave no strong validator (an ETag, or a Last-Modified and a length) that a resume could be checked against"
		case state.Bytes > onDisk:
			why = "fewer of them are left than were recorded"
		}
		if why != "" {
			d.say("Discarding %d bytes of an earlier download of %s: %s", onDisk, d.e.url, why)
		} else {
			kept = state.Bytes
		}
	}
	// Only a file with bytes in it is cut: on ext4 a truncation to zero
	// marks the file for a flush of all its data when it is closed
	// (auto_da_alloc), which would make the download wait for the disk.
	// Bytes after the last saved state are not vouched for by its digest.
	if onDisk != kept {
		if err := f.Truncate(kept); err != nil {
			f.Close()
			return newError(KindCache, d.e.url, err, "Failed to reset the partial download of %s: %v", d.e.url, err)
		}
	}
	if kept == 0 {
		os.Remove(d.e.state())
		return nil
	}
	d.etag, d.lastModified, d.total = state.ETag, state.LastModified, state.Total
	if err := d.takeUp(ctx, kept); err != nil {
		f.Close()
		return err
	}
	if got := hex.EncodeToString(d.sha.Sum(nil)); got != state.SHA256 {
		d.say("Discarding %d bytes of an earlier download of %s: they no longer have the sha256 saved with them (%s, not %s): the cache was changed or damaged", kept, d.e.url, got, state.SHA256)
		return d.reset()
	}
	d.resumed = true
	note := ""
	if c := d.sink.compression(); c != "" {
		note = fmt.Sprintf("; the kept %s data was decompressed again", c)
	}
	d.say("Resuming the download of %s at byte %d, kept from an earlier run (checked against the sha256 saved with them)%s", d.e.url, kept, note)
	return nil
}

// takeUp reads the kept bytes back once, into the hashes (which check
// them) and the decompressor.
func (d *download) takeUp(ctx context.Context, kept int64) error {
	for off := int64(0); off < kept; {
		if err := ctx.Err(); err != nil {
			// The partial file and its state stay as they are, for next time.
			return newError(KindDownload, d.e.url, errors.Join(ErrInterrupted, err), "Interrupted while resuming the download of %s", d.e.url)
		}
		n, err := d.file.ReadAt(d.buf[:min(int64(len(d.buf)), kept-off)], off)
		if n > 0 {
			chunk := d.buf[:n]
			d.hw.Write(chunk)
			d.sink.write(chunk)
			off += int64(n)
		}
		if err != nil && !(errors.Is(err, io.EOF) && off == kept) {
			return newError(KindCache, d.e.url, err, "Failed to read the partial download of %s: %v", d.e.url, err)
		}
	}
	d.written, d.saved = kept, kept
	return nil
}

func (d *download) newHash() {
	d.sha = sha256.New()
	if d.want == nil {
		d.hash, d.hw = nil, d.sha
		return
	}
	if d.want.Algorithm == "sha256" && d.want.ReadBytes == 0 {
		d.hash, d.hw = d.sha, d.sha
		return
	}
	h, err := checksum.New(d.want.Algorithm)
	if err != nil { // checked when the request was read
		panic(err)
	}
	d.hash, d.hw = h, io.MultiWriter(d.sha, checksum.NewLimited(h, d.want.ReadBytes))
}

// saveState records how far the partial file got, with the validators a
// resume must match and the digest of the bytes so far, so that the next
// attempt or run resumes, and takes up only bytes that are still whole.
func (d *download) saveState() {
	d.consumer.sync()
	d.saved = d.written
	if d.written == 0 || !strongValidator(d.etag, d.lastModified, d.total) {
		os.Remove(d.e.state())
		return
	}
	st := partialState{URL: d.e.url, ETag: d.etag, LastModified: d.lastModified, Total: d.total, Bytes: d.written,
		SHA256: hex.EncodeToString(d.sha.Sum(nil))}
	writeJSON(d.e.state(), st) // without it the next run starts over: no harm done
}

// reset starts the download over from byte 0.
func (d *download) reset() error {
	d.consumer.sync()
	d.sink.abort()
	d.sink = newSink(d.e.imagePartial())
	if err := d.file.Truncate(0); err != nil {
		return newError(KindCache, d.e.url, err, "Failed to reset the partial download of %s: %v", d.e.url, err)
	}
	d.written, d.saved, d.total = 0, 0, -1
	d.etag, d.lastModified = "", ""
	d.resumed = false
	d.newHash()
	os.Remove(d.e.state())
	return nil
}

// transfer runs attempts until the whole file is in, retrying transient
// failures with backoff. A failure that made no progress counts towards
// o.retries; one after which the file had grown does not, up to maxResumes
// (a download too slow to go on always counts). With o.retries 0 nothing
// is retried.
func (d *download) transfer(ctx context.Context, first *reply) error {
	failures, resumes := 0, 0
	best := d.written
	if d.written == 0 {
		d.say("Downloading %s to %s", d.e.url, d.e.partial())
	}
	for r := first; ; r = nil {
		err := d.attempt(ctx, r)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return d.interrupted(ctx.Err())
		}
		var fe *Error
		if errors.As(err, &fe) {
			return fe
		}
		d.saveState()
		if !isTransient(err) {
			return newError(KindDownload, d.e.url, err, "Failed to download %s: %v%s", d.e.url, err, d.keptNote())
		}
		if d.written > best && !errors.Is(err, ErrTooSlow) {
			best, failures = d.written, 0
			resumes++
		} else {
			best = max(best, d.written)
			failures++
		}
		if failures > d.o.retries || resumes > maxResumes || d.o.retries == 0 {
			return newError(KindDownload, d.e.url, err, "Failed to download %s: %v (gave up after %d attempts)%s", d.e.url, err, d.attempts, d.keptNote())
		}
		delay := d.o.delay(max(failures, 1), err)
		where := "from byte 0"
		if d.written > 0 {
			where = fmt.Sprintf("resuming at byte %d", d.written)
		}
		d.say("Downloading %s: %v; retrying in %v, %s (attempt %d)", d.e.url, err, delay, where, d.attempts+1)
		if err := sleep(ctx, delay); err != nil {
			return d.interrupted(err)
		}
	}
}

func (d *download) keptNote() string {
	if d.written == 0 {
		return ""
	}
	return fmt.Sprintf("; the %d bytes received are kept in %s to resume from", d.written, d.e.partial())
}

func (d *download) interrupted(cause error) error {
	d.saveState()
	return newError(KindDownload, d.e.url, errors.Join(ErrInterrupted, cause), "Interrupted while downloading %s%s", d.e.url, d.keptNote())
}

// ifRange is the validator that makes a Range request safe: the server
// sends the whole file instead when it no longer matches. "" when there is
// no strong one: then nothing is resumed.
func (d *download) ifRange() string {
	switch {
	case d.etag != "" && !strings.HasPrefix(d.etag, "W/"):
		return d.etag
	case d.lastModified != "" && d.total >= 0:
		return d.lastModified
	}
	return ""
}

// sameVersion checks a 206 answer against what the kept bytes came from:
// the range must start where they end, and the ETag (or the Last-Modified
// and the length) must be the ones they were sent with. It says what
// differs, or "".
func (d *download) sameVersion(resp *http.Response) string {
	cr := resp.Header.Get("Content-Range")
	start, _, total, ok := parseContentRange(cr)
	switch {
	case !ok:
		return fmt.Sprintf("an unreadable Content-Range %q", cr)
	case start != d.written:
		return fmt.Sprintf("the range %q", cr)
	case d.total >= 0 && total >= 0 && total != d.total:
		return fmt.Sprintf("a length of %d bytes instead of %d", total, d.total)
	}
	etag, lm := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	if d.etag != "" && !strings.HasPrefix(d.etag, "W/") {
		if etag != d.etag {
			return fmt.Sprintf("the ETag %q instead of %q", etag, d.etag)
		}
		return ""
	}
	if lm != d.lastModified {
		return fmt.Sprintf("the Last-Modified %q instead of %q", lm, d.lastModified)
	}
	if total < 0 && resp.ContentLength >= 0 {
		total = start + resp.ContentLength
	}
	if total != d.total {
		return "no length to check against the kept bytes"
	}
	return ""
}

// attempt makes one request (or uses first) and copies its body.
func (d *download) attempt(ctx context.Context, r *reply) error {
	d.attempts++
	if r == nil {
		h := http.Header{}
		if d.written > 0 {
			v := d.ifRange()
			if v == "" {
				d.say("The %d bytes of %s received so far cannot be resumed safely (the server gave no strong validator: an ETag, or a Last-Modified and a length); starting again from byte 0", d.written, d.e.url)
				if err := d.reset(); err != nil {
					return err
				}
			} else {
				h.Set("Range", fmt.Sprintf("bytes=%d-", d.written))
				h.Set("If-Range", v)
			}
		}
		var err error
		if r, err = d.o.get(ctx, d.e.url, h); err != nil {
			return err
		}
	}
	defer r.close()
	resp := r.resp
	switch resp.StatusCode {
	case http.StatusOK:
		if d.written > 0 {
			d.say("The server sent the whole of %s instead of the rest from byte %d (it ignores Range requests, or the file changed); starting again from byte 0", d.e.url, d.written)
			if err := d.reset(); err != nil {
				return err
			}
		}
		d.total = resp.ContentLength
	case http.StatusPartialContent:
		if d.written == 0 {
			// An answer to no Range request: take it only when it is the
			// whole file.
			start, _, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
			if !ok || start != 0 {
				return transient(fmt.Errorf("the server answered a request for the whole file with the range %q", resp.Header.Get("Content-Range")))
			}
			d.total = total
			break
		}
		if why := d.sameVersion(resp); why != "" {
			from := d.written
			if err := d.reset(); err != nil {
				return err
			}
			return transient(fmt.Errorf("the server answered the request for the bytes from %d with %s: it may be another version of the file; starting again from byte 0", from, why))
		}
		d.resumed = true
		d.say("Resumed the download of %s at byte %d", d.e.url, d.written)
	case http.StatusRequestedRangeNotSatisfiable:
		_, _, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if d.written > 0 && ok && total == d.written && d.total == d.written {
			return nil // it was all here already
		}
		if err := d.reset(); err != nil {
			return err
		}
		return transient(statusError(resp))
	default:
		return retryable(resp)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/html" {
		return newError(KindNotImage, d.e.url, nil, "Failed to download %s: the server answered with an HTML page (Content-Type: %s), not a disk image: a directory listing, a login or an error page? Check the URL",
			d.e.url, resp.Header.Get("Content-Type"))
	}
	if resp.StatusCode == http.StatusOK || d.written == 0 {
		d.etag, d.lastModified = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	}
	if err := d.checkRoom(); err != nil {
		return err
	}
	return d.copyBody(ctx, r)
}

// checkRoom refuses, before a byte is written, a file that the limit or
// the cache's free space cannot hold.
func (d *download) checkRoom() error {
	if d.total < 0 {
		return nil
	}
	if d.o.maxSize > 0 && d.total > d.o.maxSize {
		d.discard()
		return newError(KindDownload, d.e.url, ErrTooLarge, "Failed to download %s: it is %d bytes (%s), more than the limit of %s (--max-download-size)",
			d.e.url, d.total, size.Format(d.total), size.Format(d.o.maxSize))
	}
	if free, ok := freeSpace(d.space.dir); ok && d.total-d.written > free-minFreeSpace {
		return newError(KindCache, d.e.url, ErrNoSpace, "Failed to download %s: it needs %s more in the cache at %s, which has %s free (and %s are kept free); free some space or use another --cache-dir",
			d.e.url, size.Format(d.total-d.written), d.space.dir, size.Format(free), size.Format(minFreeSpace))
	}
	return nil
}

// copyBody writes the body to the partial file, the hash and the sink in
// one pass. A read that waits longer than the idle timeout cancels the
// request, and so does a rate below the minimum over a window (the
// download resumes from there).
func (d *download) copyBody(ctx context.Context, r *reply) error {
	idle := d.o.idleTimeout
	timer := time.AfterFunc(idle, func() { r.cancel(ErrIdleTimeout) })
	defer timer.Stop()
	windowStart, windowBytes := time.Now(), int64(0)
	for {
		buf := d.consumer.buffer()
		n, err := r.resp.Body.Read(buf)
		if n > 0 {
			timer.Reset(idle)
			if werr := d.write(buf[:n]); werr != nil {
				return werr
			}
			if d.o.progress != nil {
				d.o.progress(Progress{URL: d.e.url, Done: d.written, Total: d.total})
			}
		} else {
			d.consumer.release(buf)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case errors.Is(context.Cause(r.ctx), ErrIdleTimeout):
				return transient(fmt.Errorf("%w for %v after %d bytes", ErrIdleTimeout, idle, d.written))
			case errors.Is(err, io.ErrUnexpectedEOF) && d.total >= 0:
				return transient(fmt.Errorf("%w: the connection closed after %d of %d bytes", ErrShortBody, d.written, d.total))
			}
			msg, _ := describeNetError(err)
			return transient(fmt.Errorf("%s after %d bytes: %w", msg, d.written, err))
		}
		windowBytes += int64(n)
		if el := time.Since(windowStart); d.o.minRate > 0 && el >= d.o.rateWindow {
			if rate := float64(windowBytes) / el.Seconds(); rate < float64(d.o.minRate) {
				return transient(fmt.Errorf("%w: %s/s over the last %v, below the minimum of %s/s (--min-download-rate), after %d bytes",
					ErrTooSlow, size.Format(int64(rate)), el.Round(time.Second), size.Format(d.o.minRate), d.written))
			}
			windowStart, windowBytes = time.Now(), 0
		}
	}
	if d.total >= 0 && d.written != d.total {
		return transient(fmt.Errorf("%w: the server sent %d of %d bytes", ErrShortBody, d.written, d.total))
	}
	d.total = d.written
	return nil
}

// write puts p, a buffer from the consumer, in the partial file and hands
// it on to be hashed and decompressed.
func (d *download) write(p []byte) error {
	if d.o.maxSize > 0 && d.written+int64(len(p)) > d.o.maxSize {
		d.consumer.release(p)
		d.discard()
		return newError(KindDownload, d.e.url, ErrTooLarge, "Failed to download %s: it is more than the limit of %s (--max-download-size), and the server did not say how large it is",
			d.e.url, size.Format(d.o.maxSize))
	}
	if _, err := d.file.WriteAt(p, d.written); err != nil {
		d.consumer.release(p)
		d.file.Truncate(d.written)
		return newError(KindCache, d.e.url, err, "Failed to write the download of %s to the cache: %v", d.e.url, err)
	}
	d.consumer.submit(p)
	d.written += int64(len(p))
	if err := d.space.wrote(int64(len(p))); err != nil {
		d.saveState()
		return newError(KindCache, d.e.url, err, "Failed to download %s: %v%s", d.e.url, err, d.keptNote())
	}
	if d.written-d.saved >= d.o.checkpoint {
		d.saveState()
	}
	return nil
}

// complete verifies the whole file and puts it in place: a mismatch is
// removed, never kept as a verified copy nor resumed from. A mismatch in
// a file that was resumed is downloaded again once from byte 0, since the
// server may have spliced two versions. The result's files are the ones
// written, still open: never opened again by name.
func (d *download) complete() error {
	u := d.e.url
	d.consumer.sync()
	sum := hex.EncodeToString(d.sha.Sum(nil))
	digest := ""
	if d.want != nil {
		digest = hex.EncodeToString(d.hash.Sum(nil))
		if digest != d.want.Digest {
			if d.resumed && !d.restarted {
				d.restarted = true
				d.say("The checksum of the downloaded %s: %s does not match the expected checksum: %s; as it was resumed, part of it may come from another version of the file: downloading all of it again", u, digest, d.want.Digest)
				if err := d.reset(); err != nil {
					return err
				}
				return errRestart
			}
			d.discard()
			return newError(KindChecksum, u, &MismatchError{Algorithm: d.want.Algorithm, Expected: d.want.Digest, Actual: digest},
				"The checksum of the downloaded %s: %s does not match the expected checksum: %s (%s, from %s); the download is discarded",
				u, digest, d.want.Digest, d.want.Algorithm, d.want.Source)
		}
		d.say("The calculated checksum: %s matches the defined checksum: %s (%s of %s, from %s)", digest, d.want.Digest, d.want.Algorithm, u, d.want.Source)
	}
	dec, err := d.sink.finish()
	if err != nil {
		d.discard()
		if errors.Is(err, ErrNoSpace) {
			return newError(KindCache, u, err, "Failed to decompress the downloaded %s: %v", u, err)
		}
		return newError(KindDownload, u, err, "Failed to decompress the downloaded %s (%s data, as its first bytes say): %v", u, dec.kind, err)
	}
	fail := func(err error) error {
		if dec.file != nil {
			dec.file.Close()
		}
		d.discard()
		return newError(KindCache, u, err, "Failed to put the download of %s in place: %v", u, err)
	}
	// The metadata goes first and comes back last: a crash in between
	// leaves a miss, never a hit on mismatched files.
	os.Remove(d.e.meta())
	if dec.kind != "" {
		if err := os.Rename(d.e.imagePartial(), d.e.image()); err != nil {
			return fail(err)
		}
	} else {
		os.Remove(d.e.image())
	}
	if err := os.Rename(d.e.partial(), d.e.download()); err != nil {
		return fail(err)
	}
	os.Remove(d.e.state())
	m := &entryMeta{URL: u, ETag: d.etag, LastModified: d.lastModified, Size: d.written, SHA256: sum,
		Compression: dec.kind, ImageSize: dec.size, ImageDigest: dec.digest, Fetched: time.Now().UTC()}
	if d.want != nil {
		m.Digests = digestMap{digestKey(d.want.Algorithm, d.want.ReadBytes): digest}
	}
	if err := writeJSON(d.e.meta(), m); err != nil {
		if dec.file != nil {
			dec.file.Close()
		}
		d.file.Close()
		return newError(KindCache, u, err, "Failed to record the download of %s in the cache: %v", u, err)
	}
	el := time.Since(d.started)
	d.say("Downloaded %s: %d bytes (%s) in %v (%s/s) to %s", u, d.written, size.Format(d.written), el.Round(time.Millisecond),
		size.Format(int64(float64(d.written)/max(el.Seconds(), 1e-3))), d.e.download())
	file, path := d.file, d.e.download()
	if dec.kind != "" {
		d.say("Decompressed the %s data of %s while downloading: %d bytes (%s) in %s", dec.kind, u, dec.size, size.Format(dec.size), d.e.image())
		d.file.Close()
		file, path = dec.file, d.e.image()
	}
	fillResult(d.res, d.e, m, path, file, d.want, digest, false)
	return nil
}

// discard removes a complete but unusable download.
func (d *download) discard() {
	d.sink.abort()
	d.file.Close()
	d.e.removePartial()
	d.written = 0
}

// consumer runs the hash and the decompressor in a goroutine of its own, so
// that receiving, writing and hashing overlap: the download's goroutine
// takes a buffer, fills it from the network, writes it to the file and
// submits it; the consumer feeds it to fn and frees it. sync waits until
// everything submitted has been consumed: the hash and the sink may be
// looked at or replaced only then.
type consumer struct {
	work chan consumerItem
	free chan []byte
	fn   func([]byte)
}

type consumerItem struct {
	buf []byte
	ack chan struct{} // a sync request when not nil
}

// consumerBuffers is how many chunkSize buffers are in flight.
const consumerBuffers = 4

func startConsumer(fn func([]byte)) *consumer {
	c := &consumer{work: make(chan consumerItem, consumerBuffers), free: make(chan []byte, consumerBuffers), fn: fn}
	for range consumerBuffers {
		c.free <- make([]byte, chunkSize)
	}
	go func() {
		for it := range c.work {
			if it.ack != nil {
				close(it.ack)
				continue
			}
			c.fn(it.buf)
			c.free <- it.buf[:cap(it.buf)]
		}
	}()
	return c
}

func (c *consumer) buffer() []byte   { return <-c.free }
func (c *consumer) release(b []byte) { c.free <- b[:cap(b)] }
func (c *consumer) submit(b []byte)  { c.work <- consumerItem{buf: b} }

func (c *consumer) sync() {
	if c == nil { // not started yet: nothing in flight
		return
	}
	ack := make(chan struct{})
	c.work <- consumerItem{ack: ack}
	<-ack
}

// stop waits for the work in flight and ends the goroutine.
func (c *consumer) stop() {
	c.sync()
	close(c.work)
}
