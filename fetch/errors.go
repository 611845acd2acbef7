package fetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"
)

// Kind is the class of a failure, so that a caller can map it onto its own
// return codes (gen-vm-image: 10 download, 6 checksum, 3 cache, 1 path).
type Kind int

const (
	// KindDownload: the network, the server, the HTTP status, a short body,
	// or a published file that does not decompress.
	KindDownload Kind = iota + 1
	// KindChecksum: a digest mismatch, a checksum file that does not list
	// the input, or a signature that does not verify.
	KindChecksum
	// KindCache: the cache directory cannot be created or written.
	KindCache
	// KindNotFound: a local checksum, signature or key file does not exist.
	KindNotFound
	// KindNotImage: the server answered with something that is not an
	// image (an HTML page: a directory listing, a login page).
	KindNotImage
	// KindInvalid: the request itself is wrong (no URL, an unknown
	// algorithm, a signature without a key).
	KindInvalid
)

func (k Kind) String() string {
	switch k {
	case KindDownload:
		return "download"
	case KindChecksum:
		return "checksum"
	case KindCache:
		return "cache"
	case KindNotFound:
		return "not found"
	case KindNotImage:
		return "not an image"
	case KindInvalid:
		return "invalid request"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Error is every error Fetch and ResolveChecksum return: its Kind, the URL or
// path it is about, and a message that names both and says what went wrong.
type Error struct {
	Kind Kind
	URL  string // the URL (or local path) concerned
	Msg  string
	Err  error // the cause: one of the sentinels below, a *MismatchError, a *StatusError, a net error...
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

// Sentinels, tested with errors.Is; a bad signature of a checksum file is
// checksum.ErrBadSignature.
var (
	ErrChecksumMismatch = errors.New("checksum mismatch")
	ErrShortBody        = errors.New("short body")
	ErrIdleTimeout      = errors.New("no data received")
	ErrInterrupted      = errors.New("interrupted")
	ErrTooSlow          = errors.New("too slow")
	ErrTooLarge         = errors.New("too large")
)

// MismatchError says which digest was expected and which one was found. It
// matches ErrChecksumMismatch.
type MismatchError struct {
	Algorithm, Expected, Actual string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s checksum mismatch: expected %s, got %s", e.Algorithm, e.Expected, e.Actual)
}

func (e *MismatchError) Is(target error) bool { return target == ErrChecksumMismatch }

// StatusError is an HTTP answer we cannot use.
type StatusError struct {
	StatusCode int
	Status     string // "404 Not Found"
}

func (e *StatusError) Error() string { return "the server answered " + e.Status }

func newError(kind Kind, url string, err error, format string, args ...any) *Error {
	return &Error{Kind: kind, URL: url, Msg: fmt.Sprintf(format, args...), Err: err}
}

// transientError marks a failure worth retrying: a reset, a timeout, a 5xx,
// a body cut short.
type transientError struct {
	err   error
	after time.Duration // the server's Retry-After, or 0
}

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

func transient(err error) error { return &transientError{err: err} }

func isTransient(err error) bool {
	var t *transientError
	return errors.As(err, &t)
}

// transientStatus reports whether an HTTP status is worth retrying.
func transientStatus(code int) bool {
	switch code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests,
		http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// describeNetError says in words what a transport error was, and whether
// it is worth retrying. DNS failures, refused connections and certificate
// problems are not: the next mirror is a better bet.
func describeNetError(err error) (string, bool) {
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidCert x509.CertificateInvalidError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.As(err, &dnsErr):
		if dnsErr.IsTemporary || dnsErr.IsTimeout {
			return fmt.Sprintf("DNS lookup of %s failed (temporarily): %v", dnsErr.Name, dnsErr.Err), true
		}
		return fmt.Sprintf("DNS lookup of %s failed: %v", dnsErr.Name, dnsErr.Err), false
	case errors.As(err, &certErr), errors.As(err, &unknownAuth), errors.As(err, &hostErr), errors.As(err, &invalidCert):
		return fmt.Sprintf("TLS certificate not trusted: %v", innermost(err)), false
	case errors.As(err, &recordErr):
		return fmt.Sprintf("TLS handshake failed (is it an http server on an https URL?): %v", innermost(err)), false
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused", false
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset by the server", true
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "the connection closed early", true
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return fmt.Sprintf("timed out: %v", innermost(err)), true
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Sprintf("host unreachable: %v", innermost(err)), true
	}
	return innermost(err).Error(), true
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// innermost strips url.Error's "Get "URL": " prefix, which our messages
// already say.
func innermost(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
