package blockio

import (
	"bytes"
	"errors"
	"testing"
)

type recordingWriter struct {
	calls int
	data  []byte
	err   error
}

func (w *recordingWriter) WriteAt(p []byte, off int64) (int, error) {
	w.calls++
	if w.err != nil {
		return 0, w.err
	}
	if end := int(off) + len(p); end > len(w.data) {
		w.data = append(w.data, make([]byte, end-len(w.data))...)
	}
	copy(w.data[off:], p)
	return len(p), nil
}

// Consecutive slices of one buffer at consecutive offsets are one write;
// a gap in the file or in memory starts another.
func TestRunWriterCoalesces(t *testing.T) {
	w := &recordingWriter{}
	r := RunWriter{W: w}
	buf := []byte("abcdefgh")
	other := []byte("XY")
	for _, q := range []struct {
		host int64
		seg  []byte
	}{{0, buf[0:2]}, {2, buf[2:4]}, {4, buf[4:8]}, {8, other}, {20, buf[0:1]}} {
		if err := r.Queue(q.host, q.seg); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	if w.calls != 3 || !bytes.Equal(w.data[:10], []byte("abcdefghXY")) || w.data[20] != 'a' {
		t.Fatalf("%d writes, %q", w.calls, w.data)
	}
	if err := r.Flush(); err != nil || w.calls != 3 {
		t.Fatalf("an empty flush wrote: %v, %d", err, w.calls)
	}
	w.err = errors.New("disk full")
	r.Queue(4096, buf)
	if err := r.Flush(); !errors.Is(err, w.err) || err.Error() != "writing data at host offset 0x1000: disk full" {
		t.Fatalf("error %v", err)
	}
}
