package oci

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
	"os"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Kind is the class of a failure, so that a caller can map it onto its own
// return codes (gen-vm-image: 6 for KindDigest, 5 for KindInvalid, 2 for
// KindNotDisk, 10 for the rest).
type Kind int

const (
	// KindRegistry: the network, TLS, or an answer of the registry that
	// cannot be used.
	KindRegistry Kind = iota + 1
	// KindNotFound: the repository, the tag or the digest does not exist.
	KindNotFound
	// KindAuth: the registry wants credentials and has none, or refuses
	// those it was given.
	KindAuth
	// KindDigest: bytes that do not match the digest they were asked by.
	KindDigest
	// KindInvalid: the request itself: a reference or a platform that does
	// not parse, a name that cannot be a file in a layer.
	KindInvalid
	// KindNotDisk: the image is not a containerDisk this version can use.
	KindNotDisk
)

func (k Kind) String() string {
	switch k {
	case KindRegistry:
		return "registry"
	case KindNotFound:
		return "not found"
	case KindAuth:
		return "authentication"
	case KindDigest:
		return "digest"
	case KindInvalid:
		return "invalid request"
	case KindNotDisk:
		return "not a containerDisk"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Error is every error Push and Resolve return: its Kind, the reference,
// and a message that says what happened and what to do.
type Error struct {
	Kind Kind
	Ref  string
	Msg  string
	Err  error
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

// ErrDigestMismatch is matched by every KindDigest error.
var ErrDigestMismatch = errors.New("digest mismatch")

// fail describes err, a failure of go-containerregistry while doing what
// (a sentence fragment: "Failed to push X to"), in words a user can act on.
func (s *session) fail(err error, what string) *Error {
	ref := s.ref.String()
	registry := s.ref.Context().RegistryStr()
	kind, why := KindRegistry, ""
	var terr *transport.Error
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		why = "interrupted"
	case strings.Contains(err.Error(), "does not match requested digest"):
		// go-containerregistry checks a manifest fetched by digest and
		// says so only in words.
		kind, why = KindDigest, fmt.Sprintf("the registry sent a manifest that does not have the digest asked for (%v)", err)
	case errors.As(err, &terr):
		kind, why = s.describeStatus(terr)
	default:
		why = describeNetError(err, registry)
	}
	if kind == KindDigest {
		err = errors.Join(ErrDigestMismatch, err)
	}
	return &Error{Kind: kind, Ref: ref, Err: err, Msg: fmt.Sprintf("%s %s: %s", what, Scheme+ref, why)}
}

// describeStatus says what an error answer of the registry means.
func (s *session) describeStatus(e *transport.Error) (Kind, string) {
	registry := s.ref.Context().RegistryStr()
	repo := s.ref.Context().RepositoryStr()
	codes := map[transport.ErrorCode]bool{}
	var details []string
	for _, d := range e.Errors {
		codes[d.Code] = true
		details = append(details, strings.TrimSpace(string(d.Code)+" "+d.Message))
	}
	detail := fmt.Sprintf("%d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if len(details) > 0 {
		detail += ": " + strings.Join(details, "; ")
	}
	switch {
	case e.StatusCode == http.StatusUnauthorized || codes[transport.UnauthorizedErrorCode]:
		if s.anonymous {
			return KindAuth, fmt.Sprintf("%s asks for a login, and the Docker configuration (%s) has no credentials for it: log in with `docker login %s` (or podman login), or write them there (%s)",
				registry, dockerConfigPath(), registry, detail)
		}
		return KindAuth, fmt.Sprintf("%s refused the login with the credentials the Docker configuration (%s) has for it: check them, or log in again with `docker login %s` (%s)",
			registry, dockerConfigPath(), registry, detail)
	case e.StatusCode == http.StatusForbidden || codes[transport.DeniedErrorCode]:
		return KindAuth, fmt.Sprintf("%s denied access to %s to these credentials (%s)", registry, repo, detail)
	case codes[transport.NameUnknownErrorCode]:
		return KindNotFound, fmt.Sprintf("%s has no repository %s (%s)", registry, repo, detail)
	case codes[transport.ManifestUnknownErrorCode] || e.StatusCode == http.StatusNotFound:
		if _, ok := s.ref.(name.Digest); ok {
			return KindNotFound, fmt.Sprintf("%s has no image with the digest %s in %s: a wrong digest, or the image was deleted (%s)", registry, s.ref.Identifier(), repo, detail)
		}
		return KindNotFound, fmt.Sprintf("%s has no tag %s in %s (%s)", registry, s.ref.Identifier(), repo, detail)
	case codes[transport.DigestInvalidErrorCode]:
		return KindDigest, fmt.Sprintf("the registry found that the bytes it received do not match their digest (%s)", detail)
	}
	return KindRegistry, "the registry answered " + detail
}

// describeNetError says in words what went wrong on the way to registry.
func describeNetError(err error, registry string) string {
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidCert x509.CertificateInvalidError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.As(err, &dnsErr):
		return fmt.Sprintf("cannot find %s: the DNS lookup of %s failed (%v)", registry, dnsErr.Name, dnsErr.Err)
	case errors.As(err, &certErr), errors.As(err, &unknownAuth), errors.As(err, &hostErr), errors.As(err, &invalidCert):
		return fmt.Sprintf("the TLS certificate of %s is not trusted (%v): if the registry has a private CA, trust it with SSL_CERT_FILE=CA.pem (--insecure does not turn certificate checks off)",
			registry, innermost(err))
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("%s refused the connection: is the registry running, on that port?", registry)
	case errors.Is(err, ErrPlainHTTP) || errors.As(err, &recordErr) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Sprintf("%s cannot be reached over HTTPS (%v); if it is a registry that speaks plain HTTP on a network you trust, use --insecure", registry, innermost(err))
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return fmt.Sprintf("%s reset the connection (%v)", registry, innermost(err))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Sprintf("the connection to %s closed early (%v)", registry, innermost(err))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Sprintf("%s did not answer in time (%v)", registry, innermost(err))
	}
	return innermost(err).Error()
}

// innermost strips url.Error's "Get "URL": " prefix.
func innermost(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// dockerConfigPath names the file credentials are read from, for messages.
func dockerConfigPath() string {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return strings.TrimSuffix(d, "/") + "/config.json"
	}
	return "~/.docker/config.json"
}
