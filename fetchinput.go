package genvm

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"github.com/ucphhpc/gen-vm-image-go/checksum"
	"github.com/ucphhpc/gen-vm-image-go/fetch"
)

// fetchInput gets a URL input through package fetch: from the cache when a
// verified copy is there, else downloaded once, hashed while it downloads,
// and decompressed when it was published compressed. It returns the
// verified file, open, and its size.
func fetchInput(ctx context.Context, in *Input, cacheDir, image string, o *options, say func(string, ...any)) (*os.File, int64, error) {
	req := fetch.Request{URLs: append([]string{in.URL}, in.Mirrors...), CacheDir: cacheDir}
	if in.Checksum != nil {
		req.Checksum = *in.Checksum
	}
	res, err := fetch.Fetch(ctx, req, fetchOptions(o, image, say)...)
	if err != nil {
		return nil, 0, fetchError(err)
	}
	st, err := res.File.Stat()
	if err != nil {
		res.File.Close()
		return nil, 0, newError(CodeLoadFailed, err, "Failed to load path: %s - error: %v", res.Path, err)
	}
	o.input.noteDownload(res)
	if res.Algorithm != "" {
		say("Input %s is the download %s, verified (%s %s)", res.URL, res.Path, res.Algorithm, res.Digest)
	} else {
		say("Input %s is the download %s, not verified: no checksum was given", res.URL, res.Path)
	}
	return res.File, st.Size(), nil
}

// expectedChecksum returns the digest c asks of the local file at path:
// c's value, or the one c's checksum file (a URL or a path) lists for the
// file's name, after checking its signature when a key is given. It is nil
// when c asks for none.
func expectedChecksum(ctx context.Context, c *checksum.Spec, path string, say func(string, ...any)) (*checksum.Expected, error) {
	want, err := fetch.ResolveChecksum(ctx, *c, []string{filepath.Base(path)}, fetchOptions(nil, "", say)...)
	if err != nil {
		return nil, fetchError(err)
	}
	return want, nil
}

func fetchOptions(o *options, image string, say func(string, ...any)) []fetch.Option {
	return fetchOptionsFor(o, image, "download", say)
}

// fetchOptionsFor is fetchOptions for the given progress stage.
func fetchOptionsFor(o *options, image, stage string, say func(string, ...any)) []fetch.Option {
	opts := []fetch.Option{
		fetch.WithLog(func(msg string) { say("%s", msg) }),
		fetch.WithUserAgent("gen-vm-image/" + Version),
	}
	if o != nil {
		opts = append(opts, o.download...)
	}
	if o != nil && o.progress != nil {
		opts = append(opts, fetch.WithProgress(func(p fetch.Progress) {
			o.emit(Event{Image: image, Stage: stage, Done: p.Done, Total: max(p.Total, 0), DataTotal: -1})
		}))
	}
	return opts
}

// fetchError maps fetch's failure kinds onto the return codes: 10 for the
// network and the server, 6 for checksums and signatures, 3 for the cache,
// 1 for a missing local checksum, signature or key file, 5 for a request
// that cannot work.
func fetchError(err error) error {
	var fe *fetch.Error
	if !errors.As(err, &fe) {
		return newError(CodeDownload, err, "Failed to download: %v", err)
	}
	code := CodeDownload
	switch fe.Kind {
	case fetch.KindChecksum:
		code = CodeChecksum
	case fetch.KindCache:
		code = CodeCreateFailed
	case fetch.KindNotFound:
		code = CodePathNotFound
	case fetch.KindNotImage:
		code = CodeLoadFailed
	case fetch.KindInvalid:
		code = CodeInvalidAttribute
	}
	return &Error{Code: code, Msg: fe.Msg, Err: fe}
}

// decompressLocal swaps a compressed local input for its decompressed copy
// in the cache (made once, reused while the input is unchanged), as a
// compressed download is: the checksum was verified on the file as
// published. It closes f when it returns another file.
func decompressLocal(ctx context.Context, f *os.File, cacheDir, image string, o *options, say func(string, ...any)) (*os.File, int64, error) {
	head := make([]byte, 16)
	n, _ := f.ReadAt(head, 0)
	if fetch.Compression(head[:n]) == "" {
		st, err := f.Stat()
		if err != nil {
			return nil, 0, newError(CodeLoadFailed, err, "Failed to load path: %s - error: %v", f.Name(), err)
		}
		return f, st.Size(), nil
	}
	res, err := fetch.DecompressLocal(ctx, f, cacheDir, fetchOptionsFor(o, image, "decompress", say)...)
	f.Close()
	if err != nil {
		var fe *fetch.Error
		if errors.As(err, &fe) && fe.Kind == fetch.KindInvalid {
			return nil, 0, newError(CodeLoadFailed, err, "Failed to load path: %s - error: %v", f.Name(), err)
		}
		return nil, 0, fetchError(err)
	}
	st, err := res.File.Stat()
	if err != nil {
		res.File.Close()
		return nil, 0, newError(CodeLoadFailed, err, "Failed to load path: %s - error: %v", res.Path, err)
	}
	say("Input %s is %s-compressed; its decompressed copy is %s", f.Name(), res.Compression, res.Path)
	return res.File, st.Size(), nil
}
