package blockio

import (
	"fmt"
	"io"
)

// RunWriter gathers segments that lie one after the other both in the
// file and in memory (consecutive slices of one buffer) into a single
// WriteAt, so that a run of clusters copied from one source chunk costs
// one pwrite. The zero value is ready to use with W set.
type RunWriter struct {
	W    io.WriterAt
	host int64
	buf  []byte
}

// Queue adds seg, to be written at host, to the pending run, writing the
// run first when seg does not continue it. seg must stay unchanged until
// the next Flush or the Queue that writes it.
func (r *RunWriter) Queue(host int64, seg []byte) error {
	if len(r.buf) > 0 && r.host+int64(len(r.buf)) == host && contiguous(r.buf, seg) {
		r.buf = r.buf[:len(r.buf)+len(seg)]
		return nil
	}
	if err := r.Flush(); err != nil {
		return err
	}
	r.host, r.buf = host, seg
	return nil
}

// Flush writes the pending run, if any. The error names the host offset.
func (r *RunWriter) Flush() error {
	if len(r.buf) == 0 {
		return nil
	}
	_, err := r.W.WriteAt(r.buf, r.host)
	r.buf = nil
	if err != nil {
		return fmt.Errorf("writing data at host offset %#x: %w", r.host, err)
	}
	return nil
}

// contiguous reports whether b starts where a ends in the same array.
func contiguous(a, b []byte) bool {
	if cap(a)-len(a) < len(b) || len(b) == 0 {
		return false
	}
	return &a[:len(a)+1][len(a)] == &b[0]
}
