// Package oci publishes disk images to OCI registries as KubeVirt
// containerDisks and finds the disk in a containerDisk pulled from one. The
// registry protocol is go-containerregistry's; what is ours is the shape
// of a containerDisk and the care taken with what a registry sends.
//
// A containerDisk (KubeVirt user guide, "containerDisk") is a container
// image whose one layer holds the disk under /disk/, readable by the qemu
// user (UID 107), in raw or qcow2 format. Push writes exactly that, and
// nothing of the machine it runs on: the layer is an uncompressed tar of
// disk/ and disk/NAME, owned by 107:107, with one fixed timestamp, so that
// the same file gives the same layer and manifest digest wherever it is
// pushed. The layer streams from the file into the upload: the disk is
// read once, hashed on the way, and never copied.
//
// Resolve reads an image's manifest (an index is resolved to one
// platform's image) and Image.Open streams one of its layers; the caller
// verifies the bytes against the layer's digest (package fetch does, and
// caches the disk it finds in the layer).
//
// Credentials come from the Docker configuration (DOCKER_CONFIG, else
// ~/.docker/config.json, and the credential helpers it names), through
// go-containerregistry's default keychain. TLS is verified against the
// system's roots (SSL_CERT_FILE and SSL_CERT_DIR, as Go reads them); plain
// HTTP is refused unless WithInsecure is given, even for registries on
// loopback or private addresses, where go-containerregistry would fall
// back to it on its own.
package oci

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Scheme is the prefix that names a registry image where a path or a URL
// could be given: oci://REGISTRY/REPOSITORY:TAG or @sha256:DIGEST.
const Scheme = "oci://"

// DefaultPlatform is the platform an image declares, and the one an index
// is resolved to, unless WithPlatform says otherwise.
const DefaultPlatform = "linux/amd64"

// Progress is reported while a layer is uploaded or downloaded.
type Progress struct {
	Done, Total int64 // bytes of the layer
}

// Option says how Push and Resolve reach the registry.
type Option func(*options)

type options struct {
	insecure  bool
	keychain  authn.Keychain
	transport http.RoundTripper // before the plain-HTTP rule is applied
	userAgent string
	platform  string
	created   time.Time
	progress  func(Progress)
}

// WithInsecure allows registries that speak plain HTTP. It never turns off
// certificate verification: a registry with a private CA is trusted through
// SSL_CERT_FILE (or WithTransport).
func WithInsecure() Option { return func(o *options) { o.insecure = true } }

// WithKeychain finds credentials in k instead of the Docker configuration.
func WithKeychain(k authn.Keychain) Option { return func(o *options) { o.keychain = k } }

// WithTransport sends requests through rt (one with its own TLS roots,
// say) instead of the default transport. Plain HTTP is still refused
// without WithInsecure.
func WithTransport(rt http.RoundTripper) Option { return func(o *options) { o.transport = rt } }

// WithUserAgent sets the User-Agent of every request.
func WithUserAgent(s string) Option { return func(o *options) { o.userAgent = s } }

// WithPlatform sets the platform ("os/arch" or "os/arch/variant") that a
// pushed image declares and that an index is resolved to (default
// DefaultPlatform). A disk image does not say which processor it is for;
// the nodes that run it must match what the image declares.
func WithPlatform(p string) Option { return func(o *options) { o.platform = p } }

// WithCreated sets the one timestamp of a pushed image (its files, its
// configuration); the zero time means the Unix epoch. A fixed time is what
// makes a push reproducible: a build system passes SOURCE_DATE_EPOCH here.
func WithCreated(t time.Time) Option { return func(o *options) { o.created = t } }

// WithProgress has fn called as the layer's bytes go up or come down; it
// must be quick.
func WithProgress(fn func(Progress)) Option { return func(o *options) { o.progress = fn } }

func newOptions(opts []Option) *options {
	o := &options{keychain: authn.DefaultKeychain, userAgent: "gen-vm-image", platform: DefaultPlatform}
	for _, opt := range opts {
		opt(o)
	}
	if o.transport == nil {
		o.transport = newTransport()
	}
	o.transport = &schemeGuard{next: o.transport, insecure: o.insecure}
	return o
}

// newTransport is go-containerregistry's default transport with bigger
// buffers (a layer is gigabytes) and a bound on the wait for an answer.
// The wait is long: committing an upload of gigabytes to a registry whose
// storage is an object store is a copy on its side.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   50,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   30 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: 5 * time.Minute,
		// The bytes as the registry stores them: they are what the digest
		// is of.
		DisableCompression: true,
		ReadBufferSize:     256 << 10,
		WriteBufferSize:    256 << 10,
	}
}

// ErrPlainHTTP is returned for a request that would go over plain HTTP
// without WithInsecure.
var ErrPlainHTTP = errors.New("plain HTTP is not allowed without --insecure")

// schemeGuard refuses plain HTTP unless it was allowed. go-containerregistry
// falls back to HTTP by itself for registries on localhost and private
// addresses, and follows redirects to wherever a registry sends it; a
// network attacker who blocks HTTPS must not get the credentials or the
// disk in clear.
type schemeGuard struct {
	next     http.RoundTripper
	insecure bool
}

func (g *schemeGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" && !g.insecure {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), ErrPlainHTTP)
	}
	return g.next.RoundTrip(req)
}

// ParseReference reads REGISTRY/REPOSITORY[:TAG] or
// REGISTRY/REPOSITORY@sha256:DIGEST, with or without the oci:// prefix. A
// reference without a registry names Docker Hub, as docker pull reads it;
// one without a tag or digest means :latest.
func ParseReference(s string) (name.Reference, error) {
	return parseReference(s, false)
}

func parseReference(s string, insecure bool) (name.Reference, error) {
	s = trimScheme(s)
	if s == "" {
		return nil, errors.New("empty image reference")
	}
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.ParseReference(s, opts...)
	if err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %w", s, err)
	}
	if d, ok := ref.(name.Digest); ok && !strings.HasPrefix(d.DigestStr(), "sha256:") {
		return nil, fmt.Errorf("invalid image reference %q: only sha256 digests are supported", s)
	}
	return ref, nil
}

// IsReference reports whether s names a registry image: it starts with
// oci:// (in any case).
func IsReference(s string) bool {
	return len(s) >= len(Scheme) && strings.EqualFold(s[:len(Scheme)], Scheme)
}

func trimScheme(s string) string {
	if IsReference(s) {
		return s[len(Scheme):]
	}
	return s
}

// session is one reference on one registry, with the credentials the
// keychain has for it.
type session struct {
	o         *options
	ref       name.Reference
	auth      authn.Authenticator
	anonymous bool // no credentials were found
}

func (o *options) session(ctx context.Context, s string) (*session, error) {
	ref, err := parseReference(s, o.insecure)
	if err != nil {
		return nil, &Error{Kind: KindInvalid, Ref: s, Msg: err.Error(), Err: err}
	}
	auth, err := authn.Resolve(ctx, o.keychain, ref.Context())
	if err != nil {
		return nil, &Error{Kind: KindAuth, Ref: ref.String(), Err: err,
			Msg: fmt.Sprintf("Failed to read the credentials for %s from the Docker configuration: %v", ref.Context().RegistryStr(), err)}
	}
	return &session{o: o, ref: ref, auth: auth, anonymous: auth == authn.Anonymous}, nil
}

// remote is go-containerregistry's options for a request of the session.
func (s *session) remote(ctx context.Context, extra ...remote.Option) []remote.Option {
	return append([]remote.Option{remote.WithContext(ctx), remote.WithTransport(s.o.transport),
		remote.WithAuth(s.auth), remote.WithUserAgent(s.o.userAgent)}, extra...)
}

// CheckPlatform returns why p is not a platform (OS/ARCH[/VARIANT]), or
// nil.
func CheckPlatform(p string) error {
	_, err := parsePlatform(p)
	return err
}

func parsePlatform(s string) (*v1.Platform, error) {
	p, err := v1.ParsePlatform(s)
	if err != nil || p.OS == "" || p.Architecture == "" {
		return nil, fmt.Errorf("invalid platform %q: give OS/ARCH, e.g. linux/amd64 or linux/arm64", s)
	}
	return p, nil
}
