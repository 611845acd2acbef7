package fetch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"

	"github.com/ucphhpc/gen-vm-image-go/checksum"
	"github.com/ucphhpc/gen-vm-image-go/internal/location"
)

// ResolveChecksum returns the digest spec asks for (see
// checksum.Spec.Resolve), reading its checksum file, signature and key
// from URLs, with retries, or from paths; nil when spec verifies nothing.
// names are the file names to look the digest up under. Errors are *Error.
func ResolveChecksum(ctx context.Context, spec checksum.Spec, names []string, opts ...Option) (*checksum.Expected, error) {
	return resolveChecksum(ctx, newOptions(opts), spec, names, spec.File)
}

// resolveChecksum is ResolveChecksum with fetch's error kinds: a spec that
// cannot work or a key that is not one is KindInvalid, a bad signature or
// a checksum file without the file KindChecksum; what the reads return
// stays as it is. about names what the failure concerns when the spec
// itself is wrong.
func resolveChecksum(ctx context.Context, o *options, spec checksum.Spec, names []string, about string) (*checksum.Expected, error) {
	exp, err := spec.Resolve(ctx, names, o.readLocation, func(msg string) { o.say("%s", msg) })
	if err == nil {
		return exp, nil
	}
	var fe *Error
	if errors.As(err, &fe) {
		return nil, fe
	}
	var se *checksum.SpecError
	switch {
	case errors.Is(err, checksum.ErrCannotMatch):
		return nil, &Error{Kind: KindChecksum, URL: about, Msg: err.Error(), Err: err}
	case errors.As(err, &se):
		return nil, &Error{Kind: KindInvalid, URL: about, Msg: err.Error(), Err: err}
	case errors.Is(err, checksum.ErrBadKey):
		return nil, &Error{Kind: KindInvalid, URL: spec.Key, Msg: err.Error(), Err: err}
	}
	return nil, &Error{Kind: KindChecksum, URL: spec.File, Msg: err.Error(), Err: err}
}

// readLocation reads a small file (checksum file, signature, key) from a
// URL, with retries, or from a path; what names it in messages. It is the
// checksum.ReadFunc of fetch.
func (o *options) readLocation(ctx context.Context, loc, what string, limit int64) ([]byte, error) {
	if !location.IsURL(loc) {
		f, err := os.Open(loc)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, newError(KindNotFound, loc, err, "Path not found: %s - error: the %s does not exist", loc, what)
			}
			return nil, newError(KindNotFound, loc, err, "Failed to read the %s %s: %v", what, loc, err)
		}
		defer f.Close()
		data, err := readSmallBody(f, limit)
		if err != nil {
			return nil, newError(KindChecksum, loc, err, "Failed to read the %s %s: %v", what, loc, err)
		}
		return data, nil
	}
	if err := location.CheckURL(loc); err != nil {
		return nil, newError(KindDownload, loc, err, "Failed to download the %s %s: %v", what, loc, err)
	}
	var data []byte
	err := retry(ctx, o, loc, func() error {
		r, err := o.get(ctx, loc, nil)
		if err != nil {
			return err
		}
		defer r.close()
		if r.resp.StatusCode != http.StatusOK {
			return retryable(r.resp)
		}
		data, err = readSmallBody(r.resp.Body, limit)
		if err != nil && !errors.Is(err, ErrTooLarge) {
			msg, _ := describeNetError(err)
			return transient(fmt.Errorf("%s: %w", msg, err))
		}
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, newError(KindDownload, loc, errors.Join(ErrInterrupted, err), "Interrupted while downloading the %s %s", what, loc)
		}
		return nil, newError(KindDownload, loc, err, "Failed to download the %s %s: %v", what, loc, err)
	}
	return data, nil
}
