package oci

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Image is an image in a registry, resolved to one manifest.
type Image struct {
	Ref    string  // the reference, fully spelt out: REGISTRY/REPOSITORY:TAG or @DIGEST
	Digest string  // the manifest's digest (a platform's, when Ref names an index)
	Layers []Layer // as the manifest lists them: the base first

	s *session
}

// Layer is one layer of an Image, as its manifest describes it.
type Layer struct {
	Digest      string // sha256:...: what the layer's bytes hash to
	Size        int64  // its size in bytes
	MediaType   string
	Compression string // "", "gzip" or "zstd"
}

// maxLayers bounds the layers of an image we look at: Docker stops at 127.
const maxLayers = 128

// Resolve finds the image ref names and reads its manifest. An index (a
// multi-platform image) is resolved to the platform WithPlatform names
// (default DefaultPlatform). A manifest fetched by digest is checked
// against it. Errors are *Error.
func Resolve(ctx context.Context, ref string, opts ...Option) (*Image, error) {
	o := newOptions(opts)
	platform, err := parsePlatform(o.platform)
	if err != nil {
		return nil, &Error{Kind: KindInvalid, Ref: ref, Msg: err.Error(), Err: err}
	}
	s, err := o.session(ctx, ref)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(s.ref, s.remote(ctx, remote.WithPlatform(*platform))...)
	if err != nil {
		if strings.Contains(err.Error(), "no child with platform") {
			return nil, &Error{Kind: KindNotDisk, Ref: s.ref.String(), Err: err,
				Msg: fmt.Sprintf("Failed to pull %s%s: it is a multi-platform index without an image for %s; name the platform's image by its digest", Scheme, s.ref, o.platform)}
		}
		return nil, s.fail(err, "Failed to pull")
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, s.fail(err, "Failed to read the manifest of")
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, s.fail(err, "Failed to read the manifest of")
	}
	layers, err := tarLayers(Scheme+s.ref.String(), m)
	if err != nil {
		return nil, err
	}
	return &Image{Ref: s.ref.Name(), Digest: digest.String(), Layers: layers, s: s}, nil
}

// tarLayers are the layers of manifest m, each checked to be a tar layer
// that can be verified and that comes from the registry itself; what is
// not is an error of KindNotDisk naming the layer.
func tarLayers(ref string, m *v1.Manifest) ([]Layer, error) {
	notDisk := func(format string, args ...any) ([]Layer, error) {
		return nil, &Error{Kind: KindNotDisk, Ref: ref, Msg: ref + " is not a containerDisk: " + fmt.Sprintf(format, args...)}
	}
	switch {
	case len(m.Layers) == 0:
		return notDisk("its manifest lists no layers")
	case len(m.Layers) > maxLayers:
		return notDisk("its manifest lists %d layers, more than the %d an image can have", len(m.Layers), maxLayers)
	}
	var layers []Layer
	for i, l := range m.Layers {
		if len(l.URLs) > 0 {
			// A foreign layer is fetched from wherever the manifest says:
			// a registry must not send us to arbitrary hosts.
			return notDisk("layer %d is a foreign layer, to be fetched from elsewhere (%s)", i+1, strings.Join(l.URLs, ", "))
		}
		if l.Digest.Algorithm != "sha256" || len(l.Digest.Hex) != 64 {
			return notDisk("layer %d has the digest %q; this version verifies sha256", i+1, l.Digest.String())
		}
		if l.Size < 0 {
			return notDisk("layer %d has a negative size", i+1)
		}
		compression, ok := layerCompression(l.MediaType)
		if !ok {
			return notDisk("layer %d has the media type %q, which is not a tar layer", i+1, l.MediaType)
		}
		layers = append(layers, Layer{Digest: l.Digest.String(), Size: l.Size, MediaType: string(l.MediaType), Compression: compression})
	}
	return layers, nil
}

// layerCompression names the compression of a layer of media type mt, and
// whether it is a tar layer at all (image-spec layer.md; Docker's image
// manifest v2.2).
func layerCompression(mt types.MediaType) (string, bool) {
	switch mt {
	case types.OCIUncompressedLayer, types.DockerUncompressedLayer:
		return "", true
	case types.OCILayer, types.DockerLayer:
		return "gzip", true
	case types.OCILayerZStd:
		return "zstd", true
	}
	return "", false
}

// Pinned is the image's reference by digest.
func (im *Image) Pinned() string {
	return im.s.ref.Context().Name() + "@" + im.Digest
}

// Open starts the download of layer l. The bytes are the registry's as it
// sends them: the caller verifies them against l.Digest and l.Size.
func (im *Image) Open(ctx context.Context, l Layer) (io.ReadCloser, error) {
	ref, err := name.NewDigest(im.s.ref.Context().Name()+"@"+l.Digest, name.WeakValidation)
	if err != nil {
		return nil, &Error{Kind: KindNotDisk, Ref: im.Ref, Err: err, Msg: fmt.Sprintf("Failed to pull %s%s: layer %s: %v", Scheme, im.Ref, l.Digest, err)}
	}
	fail := func(err error) error {
		return im.s.fail(err, fmt.Sprintf("Failed to download the layer %s of", l.Digest))
	}
	// The blob is fetched with the registry's transport (its token, its
	// user agent), not through remote.Layer, which hashes what it reads:
	// the caller hashes the same bytes, and a third pass over a disk (the
	// caller also digests the member) cost a quarter of a pull.
	client, err := im.s.blobClient(ctx, transport.PullScope)
	if err != nil {
		return nil, fail(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, im.s.blobURL(ref.DigestStr()), nil)
	if err != nil {
		return nil, fail(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fail(err)
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		resp.Body.Close()
		return nil, fail(err)
	}
	return resp.Body, nil
}

// blobClient is an HTTP client for the blobs of the session's repository,
// through the registry's transport (its token for scope, its user agent),
// that follows only the redirects checkBlobRedirect allows.
func (s *session) blobClient(ctx context.Context, scope string) (*http.Client, error) {
	repo := s.ref.Context()
	rt, err := transport.NewWithContext(ctx, repo.Registry, s.auth,
		transport.NewUserAgent(s.o.transport, s.o.userAgent), []string{repo.Scope(scope)})
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: rt, CheckRedirect: checkBlobRedirect}, nil
}

// blobURL is where the blob of digest is in the session's repository.
func (s *session) blobURL(digest string) string {
	repo := s.ref.Context()
	u := url.URL{Scheme: repo.Scheme(), Host: repo.RegistryStr(), Path: "/v2/" + repo.RepositoryStr() + "/blobs/" + digest}
	return u.String()
}

// checkBlobRedirect is where a blob download may be sent: a registry
// commonly redirects to its storage (another host), but never from there
// to an address inside our network (a cloud's metadata service, a private
// or loopback address), which a hostile registry could use to make us
// fetch what it cannot reach. A host that is a name, not an address, is
// allowed; the transport refuses plain HTTP unless --insecure.
func checkBlobRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return fmt.Errorf("stopped after %d redirects", len(via))
	}
	from, to := via[0].URL.Hostname(), req.URL.Hostname()
	if to == from {
		return nil
	}
	if internalAddress(to) {
		return fmt.Errorf("refused the redirect from %s to %s: an internal address", from, to)
	}
	return nil
}

// internalAddress reports whether host is an IP address that is not public:
// loopback, private, link-local or unspecified. Forms of IPv4 that the
// standard parser refuses but some resolvers take (127.1, 0x7f.0.0.1,
// 2130706433) count as addresses, and as internal: no registry sends them.
func internalAddress(host string) bool {
	host, _, _ = strings.Cut(host, "%") // an IPv6 zone
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return numericIPv4(host)
	}
	addr = addr.Unmap()
	return addr.IsLoopback() || addr.IsPrivate() || addr.IsLinkLocalUnicast() ||
		addr.IsLinkLocalMulticast() || addr.IsUnspecified()
}

// numericIPv4 reports whether host is IPv4 as inet_aton reads it: one to
// four parts, each decimal, octal (0...) or hexadecimal (0x...).
func numericIPv4(host string) bool {
	parts := strings.Split(strings.ToLower(host), ".")
	if len(parts) > 4 {
		return false
	}
	for _, p := range parts {
		digits := "0123456789"
		if rest, ok := strings.CutPrefix(p, "0x"); ok {
			p, digits = rest, "0123456789abcdef"
		}
		if p == "" && digits == "0123456789" || strings.Trim(p, digits) != "" {
			return false
		}
	}
	return true
}
