package fetch

import (
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
	"github.com/ucphhpc/gen-vm-image-go/internal/safefile"
)

// sniffLen is how many leading bytes decide whether a download is
// compressed (bzip2's magic is the longest: "BZh" + level + block magic).
const sniffLen = 10

// sniffCompression names the compression of a file from its first bytes,
// or "" for none. The magic numbers are long enough that a disk image
// (qcow2 "QFI\xfb", an MBR, an ISO's zeros) never matches one.
func sniffCompression(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b, 0x08}): // RFC 1952: ID1 ID2 CM=deflate
		return "gzip"
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}): // xz file format 2.1.1.1
		return "xz"
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}): // RFC 8878 3.1.1 frame magic
		return "zstd"
	case len(head) >= 10 && head[0] == 'B' && head[1] == 'Z' && head[2] == 'h' && head[3] >= '1' && head[3] <= '9' &&
		(bytes.Equal(head[4:10], []byte{0x31, 0x41, 0x59, 0x26, 0x53, 0x59}) || // block header (pi)
			bytes.Equal(head[4:10], []byte{0x17, 0x72, 0x45, 0x38, 0x50, 0x90})): // end of stream (sqrt pi): empty
		return "bzip2"
	}
	return ""
}

// sink receives the published bytes in order. Once the first sniffLen bytes
// show a compressed file it streams them, in a goroutine of its own, through
// the decompressor into a sparse file at path; otherwise it does nothing.
// write never blocks on a failed decoder and never fails: finish reports,
// so that a checksum mismatch (the likelier story) is reported first.
type sink struct {
	path    string
	head    []byte
	decided bool
	dec     *decoder
}

func newSink(path string) *sink { return &sink{path: path} }

func (s *sink) write(p []byte) {
	if !s.decided {
		take := min(sniffLen-len(s.head), len(p))
		s.head = append(s.head, p[:take]...)
		p = p[take:]
		if len(s.head) < sniffLen {
			return
		}
		s.decide()
	}
	if s.dec != nil && len(p) > 0 {
		s.dec.write(p)
	}
}

func (s *sink) decide() {
	s.decided = true
	if kind := sniffCompression(s.head); kind != "" {
		s.dec = startDecoder(kind, s.path)
		s.dec.write(s.head)
	}
}

// compression is what the sink decided so far.
func (s *sink) compression() string {
	if s.dec == nil {
		return ""
	}
	return s.dec.kind
}

// decompressed is the sink's product: the decompressed copy, open, with
// its size and image digest.
type decompressed struct {
	kind   string // "" when the file was not compressed: then nothing else is set
	file   *os.File
	size   int64
	digest string
}

// finish ends the input and waits for the decoder. The copy's file stays
// open: it is handed on as it is, never opened again by name.
func (s *sink) finish() (decompressed, error) {
	if !s.decided {
		s.decide()
	}
	if s.dec == nil {
		return decompressed{}, nil
	}
	err := s.dec.finish()
	return decompressed{kind: s.dec.kind, file: s.dec.out, size: s.dec.size, digest: s.dec.digest}, err
}

// abort stops the decoder and removes its output.
func (s *sink) abort() {
	if s.dec != nil {
		s.dec.abort()
		if s.dec.out != nil {
			s.dec.out.Close()
		}
		s.dec = nil
	}
	os.Remove(s.path)
}

var errAborted = errors.New("decompression aborted")

// chunkSize is the size of the buffers handed to the decoder; queueLen of
// them may wait, so the download never waits for a slow decompressor until
// queueLen*chunkSize bytes are queued.
const (
	chunkSize = 1 << 20
	queueLen  = 16
)

var chunkPool = sync.Pool{New: func() any { b := make([]byte, 0, chunkSize); return &b }}

type decoder struct {
	kind     string
	in       chan *[]byte
	stop     chan struct{} // closed by abort
	done     chan struct{} // closed when run returns
	closed   bool
	err      error
	out      *os.File // the decompressed copy, open until the sink's owner closes it
	size     int64
	digest   string
	stopOnce sync.Once
}

func startDecoder(kind, path string) *decoder {
	d := &decoder{kind: kind, in: make(chan *[]byte, queueLen), stop: make(chan struct{}), done: make(chan struct{})}
	go d.run(path)
	return d
}

func (d *decoder) write(p []byte) {
	for len(p) > 0 {
		b := chunkPool.Get().(*[]byte)
		n := min(len(p), cap(*b))
		*b = append((*b)[:0], p[:n]...)
		p = p[n:]
		select {
		case d.in <- b:
		case <-d.done: // failed: finish reports why
			chunkPool.Put(b)
			return
		}
	}
}

func (d *decoder) finish() error {
	if !d.closed {
		d.closed = true
		close(d.in)
	}
	<-d.done
	return d.err
}

func (d *decoder) abort() {
	d.stopOnce.Do(func() { close(d.stop) })
	<-d.done
}

// chanReader reads the decoder's queued chunks.
type chanReader struct {
	d   *decoder
	buf *[]byte
	cur []byte
}

func (r *chanReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.buf != nil {
			chunkPool.Put(r.buf)
			r.buf = nil
		}
		select {
		case b, ok := <-r.d.in:
			if !ok {
				return 0, io.EOF
			}
			r.buf, r.cur = b, *b
		case <-r.d.stop:
			return 0, errAborted
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

func (d *decoder) run(path string) {
	defer close(d.done)
	src := &chanReader{d: d}
	// Whatever is at the name (a copy an earlier run left, or a link
	// planted there) goes: the copy is created new, never written through.
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		d.err = fmt.Errorf("removing an old decompressed copy: %w", err)
		return
	}
	out, err := safefile.Create(path, 0o644)
	if err != nil {
		d.err = fmt.Errorf("creating the decompressed copy: %w", err)
		return
	}
	d.out = out
	d.size, d.digest, d.err = decompress(d.kind, out, src)
	if d.err == nil {
		// Bytes after the compressed data are not part of any image. The
		// decoders read ahead for a next stream, so this also drains the
		// queue so that the writer never blocks.
		n, err := io.Copy(io.Discard, src)
		switch {
		case err != nil:
			d.err = err
		case n > 0:
			d.err = fmt.Errorf("%d bytes of trailing data after the %s stream", n, d.kind)
		}
	}
}

// decompress writes the decompressed src to out, sparsely, and returns its
// size and image digest.
func decompress(kind string, out *os.File, src io.Reader) (int64, string, error) {
	var r io.Reader
	switch kind {
	case "gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			return 0, "", fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(src)
		if err != nil {
			return 0, "", fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		r = zr.IOReadCloser()
	case "xz":
		zr, err := xz.NewReader(src)
		if err != nil {
			return 0, "", fmt.Errorf("xz: %w", err)
		}
		r = zr
	case "bzip2":
		r = bzip2.NewReader(src)
	default:
		return 0, "", fmt.Errorf("unknown compression %q", kind)
	}
	w := &sparseWriter{f: out, digest: newBlockDigester(), space: spaceGuard{dir: filepath.Dir(out.Name())}}
	buf := make([]byte, chunkSize)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return w.off, "", fmt.Errorf("writing the decompressed copy: %w", werr)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if errors.Is(err, errAborted) {
				return w.off, "", err
			}
			return w.off, "", fmt.Errorf("%s: %w", kind, err)
		}
	}
	return w.off, w.digest.sum(), w.finish()
}

// sparseWriter writes a fresh file front to back and leaves a hole where a
// block is all zeros: decompressed raw disk images are mostly zeros. It is
// correct at any alignment, since a fresh file reads as zeros wherever it
// was not written; aligned blocks only make the holes real.
type sparseWriter struct {
	f      *os.File
	off    int64
	digest *blockDigester // the image digest of everything written
	space  spaceGuard     // a decompression bomb must not fill the disk
}

const sparseBlock = 4096

func (w *sparseWriter) Write(p []byte) (int, error) {
	total := len(p)
	if w.digest != nil {
		w.digest.Write(p)
	}
	start := w.off // start of the pending run of data
	var run []byte
	flush := func() error {
		if len(run) > 0 {
			if _, err := w.f.WriteAt(run, start); err != nil {
				return err
			}
			return w.space.wrote(int64(len(run)))
		}
		return nil
	}
	for len(p) > 0 {
		n := min(len(p), sparseBlock-int(w.off%sparseBlock))
		block := p[:n]
		if blockio.IsZero(block) {
			if err := flush(); err != nil {
				return 0, err
			}
			run = nil
			start = w.off + int64(n)
		} else if run == nil {
			run = block
		} else {
			run = run[:len(run)+n] // block follows run in p
		}
		w.off += int64(n)
		p = p[n:]
	}
	if err := flush(); err != nil {
		return 0, err
	}
	return total, nil
}

// finish sets the file's length, which trailing holes do not.
func (w *sparseWriter) finish() error { return w.f.Truncate(w.off) }
