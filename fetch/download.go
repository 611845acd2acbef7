package fetch

import (
	"context"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ucphhpc/gen-vm-image-go/checksum"
	"github.com/ucphhpc/gen-vm-image-go/size"
)

// download fetches one URL into its cache entry's partial file, hashing and
// decompressing in the same pass, and puts the result in place when it is
// complete and verified. The caller holds the entry's lock.
type download struct {
	o    *options
	e    entry
	want *digestSpec // nil: nothing to verify
	res  *Result

	file               *os.File // e.partial()
	written            int64    // bytes of the published file in file (and hashed)
	total              int64    // its size; -1 while unknown
	etag, lastModified string
	hash               hash.Hash // nil without want
	hw                 io.Writer // hash, fed only the first ReadBytes bytes
	sink               *sink
	consumer           *consumer // feeds hw and sink off the download's goroutine
	saved              int64     // written when the state was last saved
	buf                []byte
	attempts           int
	started            time.Time
}

func (d *download) say(format string, args ...any) { d.o.say(format, args...) }

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
	if err := d.transfer(ctx, first); err != nil {
		return err
	}
	return d.complete()
}

// open opens the partial file and takes up what an earlier run left there,
// when it can be trusted: bytes from the same URL, with a validator the
// server can confirm them against (If-Range) or a checksum that will judge
// them.
func (d *download) open(ctx context.Context) error {
	d.total = -1
	d.buf = make([]byte, chunkSize)
	d.started = time.Now()
	d.sink = newSink(d.e.imagePartial())
	d.newHash()
	f, err := os.OpenFile(d.e.partial(), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return newError(KindCache, d.e.url, err, "Failed to create the download of %s in the cache: %v", d.e.url, err)
	}
	d.file = f
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return newError(KindCache, d.e.url, err, "Failed to read the partial download of %s: %v", d.e.url, err)
	}
	kept := st.Size()
	state := d.e.loadState()
	if kept > 0 {
		why := ""
		switch {
		case state == nil:
			why = "there is no record of where they came from"
		case state.ETag == "" && state.LastModified == "" && d.want == nil:
			why = "the server gave no ETag or Last-Modified to confirm them with, and no checksum is given"
		case state.Total >= 0 && kept > state.Total:
			why = "there are more of them than the file has"
		}
		if why != "" {
			d.say("Discarding %d bytes of an earlier download of %s: %s", kept, d.e.url, why)
			kept = 0
		}
	}
	if kept == 0 {
		os.Remove(d.e.state())
		// Only a file with bytes in it is emptied: on ext4 a truncation to
		// zero marks the file for a flush of all its data when it is closed
		// (auto_da_alloc), which would make the download wait for the disk.
		if st.Size() != 0 {
			if err := f.Truncate(0); err != nil {
				f.Close()
				return newError(KindCache, d.e.url, err, "Failed to reset the partial download of %s: %v", d.e.url, err)
			}
		}
		return nil
	}
	d.etag, d.lastModified, d.total = state.ETag, state.LastModified, state.Total
	hashed := kept // bytes the hash covers already
	if d.want != nil {
		hashed = 0
		if state.Algorithm == d.want.Algorithm && state.ReadBytes == d.want.ReadBytes && state.Bytes <= kept && d.restoreHash(state.HashState, state.Bytes) {
			hashed = state.Bytes
		}
	}
	if err := d.takeUp(ctx, kept, hashed); err != nil {
		f.Close()
		return err
	}
	note := ""
	switch {
	case d.want == nil:
	case hashed == kept:
		note = "; the saved hash state goes on from there"
	default:
		note = fmt.Sprintf("; %d kept bytes were hashed again", kept-hashed)
	}
	if c := d.sink.compression(); c != "" {
		note += fmt.Sprintf("; the kept %s data was decompressed again", c)
	}
	d.say("Resuming the download of %s at byte %d, kept from an earlier run%s", d.e.url, kept, note)
	return nil
}

// takeUp feeds the kept bytes to what needs them: the hash from byte
// hashed on, and the decompressor (all of them) when the file is
// compressed. This is the only time a byte is read back.
func (d *download) takeUp(ctx context.Context, kept, hashed int64) error {
	head := make([]byte, min(kept, sniffLen))
	if _, err := d.file.ReadAt(head, 0); err != nil {
		return newError(KindCache, d.e.url, err, "Failed to read the partial download of %s: %v", d.e.url, err)
	}
	from := hashed
	if sniffCompression(head) != "" {
		from = 0
	}
	if from > 0 {
		d.sink.write(head)
	}
	for off := from; off < kept; {
		if err := ctx.Err(); err != nil {
			// The partial file and its state stay as they are, for next time.
			return newError(KindDownload, d.e.url, errors.Join(ErrInterrupted, err), "Interrupted while resuming the download of %s", d.e.url)
		}
		n, err := d.file.ReadAt(d.buf[:min(int64(len(d.buf)), kept-off)], off)
		if n > 0 {
			chunk := d.buf[:n]
			d.sink.write(chunk)
			if off+int64(n) > hashed {
				d.hw.Write(chunk[max(hashed-off, 0):])
			}
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
	if d.want == nil {
		d.hash, d.hw = nil, io.Discard
		return
	}
	h, err := checksum.New(d.want.Algorithm)
	if err != nil { // checked when the request was read
		panic(err)
	}
	d.hash, d.hw = h, checksum.NewLimited(h, d.want.ReadBytes)
}

// restoreHash loads a saved hash state that covers the first covered bytes.
func (d *download) restoreHash(state []byte, covered int64) bool {
	u, ok := d.hash.(encoding.BinaryUnmarshaler)
	if !ok || len(state) == 0 {
		return false
	}
	if err := u.UnmarshalBinary(state); err != nil {
		d.newHash()
		return false
	}
	switch rb := d.want.ReadBytes; {
	case rb <= 0:
		d.hw = d.hash
	case covered >= rb:
		d.hw = io.Discard
	default:
		d.hw = checksum.NewLimited(d.hash, rb-covered)
	}
	return true
}

// saveState records how far the partial file got, with the hash state
// where the hash can save it, so that the next attempt or run resumes.
func (d *download) saveState() {
	d.consumer.sync()
	d.saved = d.written
	if d.written == 0 {
		os.Remove(d.e.state())
		return
	}
	st := partialState{URL: d.e.url, ETag: d.etag, LastModified: d.lastModified, Total: d.total, Bytes: d.written}
	if m, ok := d.hash.(encoding.BinaryMarshaler); ok {
		if b, err := m.MarshalBinary(); err == nil {
			st.Algorithm, st.ReadBytes, st.HashState = d.want.Algorithm, d.want.ReadBytes, b
		}
	}
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
	d.newHash()
	os.Remove(d.e.state())
	return nil
}

// transfer runs attempts until the whole file is in, retrying transient
// failures with backoff. A failure that made no progress counts towards
// o.retries; one after which the file had grown does not, up to maxResumes.
// With o.retries 0 nothing is retried.
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
		if d.written > best {
			best, failures = d.written, 0
			resumes++
		} else {
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
// sends the whole file instead when it no longer matches. RFC 9110 13.1.5
// wants a strong ETag or a date.
func (d *download) ifRange() string {
	if d.etag != "" && !strings.HasPrefix(d.etag, "W/") {
		return d.etag
	}
	return d.lastModified
}

// attempt makes one request (or uses first) and copies its body.
func (d *download) attempt(ctx context.Context, r *reply) error {
	d.attempts++
	if r == nil {
		h := http.Header{}
		if d.written > 0 {
			h.Set("Range", fmt.Sprintf("bytes=%d-", d.written))
			if v := d.ifRange(); v != "" {
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
		start, _, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if etag := resp.Header.Get("ETag"); ok && d.etag != "" && etag != "" && etag != d.etag {
			ok, start = false, -1
		}
		if !ok || start != d.written {
			what := resp.Header.Get("Content-Range")
			if err := d.reset(); err != nil {
				return err
			}
			if !ok || start != 0 {
				return transient(fmt.Errorf("the server answered a request for the bytes from %d with the range %q (or another version of the file); starting again from byte 0", d.written, what))
			}
		}
		if total < 0 && resp.ContentLength >= 0 {
			total = start + resp.ContentLength
		}
		d.total = total
		if start > 0 {
			d.say("Resumed the download of %s at byte %d", d.e.url, start)
		}
	case http.StatusRequestedRangeNotSatisfiable:
		_, _, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if d.written > 0 && ((ok && total == d.written) || d.total == d.written) {
			d.total = d.written // it was all here already
			return nil
		}
		if err := d.reset(); err != nil {
			return err
		}
		return transient(statusError(resp))
	default:
		return retryable(resp)
	}
	d.etag, d.lastModified = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	return d.copyBody(ctx, r)
}

// copyBody writes the body to the partial file, the hash and the sink in
// one pass. A read that waits longer than the idle timeout cancels the
// request (the download resumes from there).
func (d *download) copyBody(ctx context.Context, r *reply) error {
	idle := d.o.idleTimeout
	timer := time.AfterFunc(idle, func() { r.cancel(ErrIdleTimeout) })
	defer timer.Stop()
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
	if _, err := d.file.WriteAt(p, d.written); err != nil {
		d.consumer.release(p)
		d.file.Truncate(d.written)
		return newError(KindCache, d.e.url, err, "Failed to write the download of %s to the cache: %v", d.e.url, err)
	}
	d.consumer.submit(p)
	d.written += int64(len(p))
	if d.written-d.saved >= d.o.checkpoint {
		d.saveState()
	}
	return nil
}

// complete verifies the whole file and puts it in place: a mismatch is
// removed, never kept as a verified copy nor resumed from.
func (d *download) complete() error {
	u := d.e.url
	d.consumer.sync()
	digest := ""
	if d.want != nil {
		digest = hex.EncodeToString(d.hash.Sum(nil))
		if digest != d.want.Value {
			d.discard()
			return newError(KindChecksum, u, &MismatchError{Algorithm: d.want.Algorithm, Expected: d.want.Value, Actual: digest},
				"The checksum of the downloaded %s: %s does not match the expected checksum: %s (%s, from %s); the download is discarded",
				u, digest, d.want.Value, d.want.Algorithm, d.want.Source)
		}
		d.say("The calculated checksum: %s matches the defined checksum: %s (%s of %s, from %s)", digest, d.want.Value, d.want.Algorithm, u, d.want.Source)
	}
	kind, imageSize, err := d.sink.finish()
	if err != nil {
		d.discard()
		return newError(KindDownload, u, err, "Failed to decompress the downloaded %s (%s data, as its first bytes say): %v", u, kind, err)
	}
	if err := d.file.Close(); err != nil {
		d.discard()
		return newError(KindCache, u, err, "Failed to write the download of %s to the cache: %v", u, err)
	}
	// The metadata goes first and comes back last: a crash in between
	// leaves a miss, never a hit on mismatched files.
	os.Remove(d.e.meta())
	if kind != "" {
		if err := os.Rename(d.e.imagePartial(), d.e.image()); err != nil {
			d.discard()
			return newError(KindCache, u, err, "Failed to put the download of %s in place: %v", u, err)
		}
	} else {
		os.Remove(d.e.image())
	}
	if err := os.Rename(d.e.partial(), d.e.download()); err != nil {
		d.discard()
		return newError(KindCache, u, err, "Failed to put the download of %s in place: %v", u, err)
	}
	os.Remove(d.e.state())
	m := &entryMeta{URL: u, ETag: d.etag, LastModified: d.lastModified, Size: d.written,
		Compression: kind, ImageSize: imageSize, Fetched: time.Now().UTC()}
	if d.want != nil {
		m.Digests = digestMap{digestKey(d.want.Algorithm, d.want.ReadBytes): digest}
	}
	if err := writeJSON(d.e.meta(), m); err != nil {
		return newError(KindCache, u, err, "Failed to record the download of %s in the cache: %v", u, err)
	}
	el := time.Since(d.started)
	d.say("Downloaded %s: %d bytes (%s) in %v (%s/s) to %s", u, d.written, size.Format(d.written), el.Round(time.Millisecond),
		size.Format(int64(float64(d.written)/max(el.Seconds(), 1e-3))), d.e.download())
	if kind != "" {
		d.say("Decompressed the %s data of %s while downloading: %d bytes (%s) in %s", kind, u, imageSize, size.Format(imageSize), d.e.image())
	}
	return d.e.openResult(m, d.want, digest, false, d.res)
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
