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
		var re *RedirectError
		if errors.As(err, &re) {
			return nil, re // final: asking again gets the same answer
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

// readSmallBody reads a response body of at most limit bytes.
func readSmallBody(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	return data, nil
}

// RedirectError is a redirect we do not follow: a loop, too many, to
// another scheme than http(s), or from https to http. It is not retried.
type RedirectError struct {
	From, To string
	Reason   string
}

func (e *RedirectError) Error() string {
	return fmt.Sprintf("%s redirects to %s: %s", e.From, e.To, e.Reason)
}

// checkRedirect is the client's redirect policy: follow within http(s),
// never from https down to http (the checksum may be absent, and the
// bytes would then be anyone's on the way), at most maxRedirects, no loop;
// and say where it leads, for -v.
func (o *options) checkRedirect(req *http.Request, via []*http.Request) error {
	prev := via[len(via)-1].URL
	to := req.URL
	fail := func(reason string) error {
		return &RedirectError{From: prev.Redacted(), To: to.Redacted(), Reason: reason}
	}
	switch {
	case to.Scheme != "http" && to.Scheme != "https":
		return fail(fmt.Sprintf("the %s scheme is not followed (only http and https are)", to.Scheme))
	case prev.Scheme == "https" && to.Scheme == "http":
		return fail("a redirect from https to http is not followed")
	case len(via) >= maxRedirects:
		return fail(fmt.Sprintf("more than %d redirects", maxRedirects))
	}
	for _, v := range via {
		if v.URL.String() == to.String() {
			return fail("a redirect loop")
		}
	}
	if to.Host != prev.Host || to.Scheme != prev.Scheme {
		o.say("%s redirects to another host or scheme: %s", prev.Redacted(), to.Redacted())
	} else {
		o.say("%s redirects to %s", prev.Redacted(), to.Redacted())
	}
	return nil
}
