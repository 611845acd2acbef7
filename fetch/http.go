package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// reply is a response whose request context can be cancelled on its own:
// the idle timeout cancels it with ErrIdleTimeout as the cause.
type reply struct {
	resp   *http.Response
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func (r *reply) close() {
	r.resp.Body.Close()
	r.cancel(nil)
}

// get sends a GET with header h. Transport failures worth retrying come
// back marked transient; a response of any status is returned as is.
func (o *options) get(ctx context.Context, u string, h http.Header) (*reply, error) {
	rctx, cancel := context.WithCancelCause(ctx)
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u, nil)
	if err != nil {
		cancel(nil)
		return nil, fmt.Errorf("invalid URL: %w", err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", o.userAgent)
	// Ask for the bytes as published: no transparent gzip, whatever the
	// client's settings, so that the checksum and Range offsets hold.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := o.client.Do(req)
	if err != nil {
		cancel(nil)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		msg, retry := describeNetError(err)
		err = fmt.Errorf("%s: %w", msg, err)
		if retry {
			return nil, transient(err)
		}
		return nil, err
	}
	return &reply{resp: resp, ctx: rctx, cancel: cancel}, nil
}

func statusError(resp *http.Response) *StatusError {
	return &StatusError{StatusCode: resp.StatusCode, Status: resp.Status}
}

// retryable is the error for a response we cannot use: transient for the
// statuses worth retrying, with the server's Retry-After in seconds.
func retryable(resp *http.Response) error {
	err := statusError(resp)
	if !transientStatus(resp.StatusCode) {
		return err
	}
	t := &transientError{err: err}
	if s, perr := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); perr == nil && s > 0 {
		t.after = time.Duration(s) * time.Second
	}
	return t
}

// parseContentRange reads "bytes START-END/TOTAL" (TOTAL may be "*",
// giving -1). RFC 9110 14.4.
func parseContentRange(s string) (start, end, total int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(s), "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	span, size, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	total = -1
	if size != "*" {
		n, err := strconv.ParseInt(size, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, 0, false
		}
		total = n
	}
	if span == "*" { // an unsatisfied range: "bytes */TOTAL"
		return -1, -1, total, true
	}
	a, b, found := strings.Cut(span, "-")
	if !found {
		return 0, 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start || (total >= 0 && end >= total) {
		return 0, 0, 0, false
	}
	return start, end, total, true
}

var errTooLarge = errors.New("too large")

// readSmallBody reads a response body of at most limit bytes.
func readSmallBody(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", errTooLarge, limit)
	}
	return data, nil
}
