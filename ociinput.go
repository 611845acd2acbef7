package genvm

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/ucphhpc/gen-vm-image-go/fetch"
	"github.com/ucphhpc/gen-vm-image-go/publish/oci"
)

// pullInput gets an oci:// input: the image's manifest from the registry,
// then the disk out of its topmost layer that has one, as the layer
// streams in (from the cache, when the layer was pulled before). The disk
// is verified against the layer's digest, and against the input's
// checksum when one is given. It returns the disk, open, and its size.
func pullInput(ctx context.Context, in *Input, cacheDir, image string, o *options, say func(string, ...any)) (*os.File, int64, error) {
	img, err := oci.Resolve(ctx, in.OCI, o.registryOptions(image, "")...)
	if err != nil {
		return nil, 0, registryError(ctx, err)
	}
	source := oci.Scheme + img.Pinned()
	layers := "1 layer"
	if len(img.Layers) != 1 {
		layers = sprintf("%d layers", len(img.Layers))
	}
	say("Input %s%s is %s, with %s", oci.Scheme, img.Ref, source, layers)
	// The disk is in the top layer of a containerDisk built FROM scratch;
	// one built on a base image has it in a layer above the base's.
	for i := len(img.Layers) - 1; i >= 0; i-- {
		l := img.Layers[i]
		res, err := fetch.FetchLayer(ctx, fetch.LayerRequest{
			Digest: l.Digest, Size: l.Size, Compression: l.Compression, Dir: oci.DiskDir, Source: source, CacheDir: cacheDir,
			Open: func(ctx context.Context) (io.ReadCloser, error) { return img.Open(ctx, l) },
		}, fetchOptions(o, image, say)...)
		if errors.Is(err, fetch.ErrNoMember) {
			say("The layer %s of %s has no file in /%s/", l.Digest, source, oci.DiskDir)
			continue
		}
		if err != nil {
			return nil, 0, registryError(ctx, err)
		}
		st, err := res.File.Stat()
		if err != nil {
			res.File.Close()
			return nil, 0, newError(CodeLoadFailed, err, "Failed to load path: %s - error: %v", res.Path, err)
		}
		if c := in.Checksum; c != nil {
			verified, err := verifyChecksum(ctx, res.File, st.Size(), res.Member, c, say)
			if err != nil {
				res.File.Close()
				return nil, 0, err
			}
			o.input.noteVerified(verified)
		}
		o.input.rec.OCI = source
		return res.File, st.Size(), nil
	}
	return nil, 0, newError(CodeLoadFailed, fetch.ErrNoMember,
		"Failed to load %s: it is not a containerDisk: none of its %d layers has a file in /%s/", source, len(img.Layers), oci.DiskDir)
}

// registryError maps the failures of a pull or a push onto the return
// codes: 6 for bytes that do not match their digest, 5 for a request that
// cannot work, 2 for an image that is no containerDisk, 10 for the network
// and the registry (a missing tag, a refused login); the cache's own
// failures as fetchError maps them.
func registryError(ctx context.Context, err error) error {
	var oe *oci.Error
	if errors.As(err, &oe) {
		code := CodeDownload
		switch oe.Kind {
		case oci.KindDigest:
			code = CodeChecksum
		case oci.KindInvalid:
			code = CodeInvalidAttribute
		case oci.KindNotDisk:
			code = CodeLoadFailed
		}
		msg := oe.Msg
		if ctx.Err() != nil {
			msg = "Interrupted: " + msg
		}
		return &Error{Code: code, Msg: msg, Err: err}
	}
	return fetchError(err)
}
