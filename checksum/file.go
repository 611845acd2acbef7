package checksum

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
)

// DefaultBufferSize is the Python tool's default read size (64 KiB).
const DefaultBufferSize = 65536

// maxBufferSize bounds the read buffer whatever the caller asks for; the
// digest never depends on the buffer size, so clamping is invisible.
const maxBufferSize = 16 << 20

// FileDigest returns the lowercase hex digest of the file at path; see
// Digest.
func FileDigest(ctx context.Context, path, algorithm string, bufferSize int, readBytes int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("checksum: %w", err)
	}
	defer f.Close()
	sum, err := Digest(ctx, f, algorithm, bufferSize, readBytes)
	if err != nil {
		return "", fmt.Errorf("checksum %s: %w", path, err)
	}
	return sum, nil
}

// Digest returns the lowercase hex digest of what r reads. Callers that
// go on to use what they hashed pass the file they will use (a section of
// it), never its name: a name can be given to another file in between.
//
// It reproduces the Python tool's hashsum(path, algorithm, buffer_size,
// read_bytes_of_file): with readBytes > 0 exactly the first readBytes bytes
// are hashed (the whole file when it is shorter); with readBytes == 0 the
// whole file is. The Python loop shrinks its last read so that it stops at
// exactly read_bytes whatever the buffer size, so bufferSize only sets the
// read size and never changes the digest. bufferSize 0 means
// DefaultBufferSize. Negative values are refused: Python would silently hash
// the whole file for a negative read_bytes, and nothing for buffer_size 0.
func Digest(ctx context.Context, r io.Reader, algorithm string, bufferSize int, readBytes int64) (string, error) {
	h, err := New(algorithm)
	if err != nil {
		return "", err
	}
	if bufferSize < 0 {
		return "", fmt.Errorf("checksum buffer size %d: must be positive", bufferSize)
	}
	if readBytes < 0 {
		return "", fmt.Errorf("checksum read bytes %d: must be positive (or 0 for the whole file)", readBytes)
	}
	if bufferSize == 0 {
		bufferSize = DefaultBufferSize
	}
	bufferSize = min(bufferSize, maxBufferSize)
	if readBytes > 0 && readBytes < int64(bufferSize) {
		bufferSize = int(readBytes)
	}
	if readBytes > 0 {
		r = io.LimitReader(r, readBytes)
	}
	if err := hashReader(ctx, h, r, make([]byte, bufferSize)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hashReader feeds r into h, checking ctx between reads so a cancelled run
// stops within one buffer.
func hashReader(ctx context.Context, h hash.Hash, r io.Reader, buf []byte) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := r.Read(buf)
		h.Write(buf[:n]) // hash.Hash.Write never fails
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Equal reports whether two hex digests are the same, ignoring case and
// surrounding white space. An empty digest never matches: a missing value
// must not pass as a verified one.
func Equal(expected, actual string) bool {
	expected, actual = strings.TrimSpace(expected), strings.TrimSpace(actual)
	return expected != "" && strings.EqualFold(expected, actual)
}

// NewLimited returns a writer that feeds h only the first readBytes bytes
// written to it (every byte when readBytes <= 0), with FileDigest's
// read-bytes rule. It always reports the whole write as done, so it can sit
// in an io.MultiWriter beside the file a download is saved to.
func NewLimited(h hash.Hash, readBytes int64) io.Writer {
	if readBytes <= 0 {
		return h
	}
	return &limitedWriter{h: h, left: readBytes}
}

type limitedWriter struct {
	h    hash.Hash
	left int64
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	if w.left > 0 {
		n := min(int64(len(p)), w.left)
		w.h.Write(p[:n])
		w.left -= n
	}
	return len(p), nil
}
