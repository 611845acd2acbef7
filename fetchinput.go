package genvm

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"github.com/ucphhpc/gen-vm-image-go/fetch"
)

// fetchInput gets a URL input through package fetch: from the cache when a
// verified copy is there, else downloaded once, hashed while it downloads,
// and decompressed when it was published compressed. It returns the
// verified file, open, and its size.
func fetchInput(ctx context.Context, in *Input, cacheDir, image string, o *options, say func(string, ...any)) (*os.File, int64, error) {
	req := fetch.Request{URLs: append([]string{in.URL}, in.Mirrors...), CacheDir: cacheDir}
	if c := in.Checksum; c != nil {
		req.Checksum = fetch.Checksum{Type: c.Type, Value: c.Value, BufferSize: c.BufferSize, ReadBytes: c.ReadBytes}
		req.SumsFile, req.Signature, req.Key = c.File, c.Signature, c.Key
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
	say("Input %s is the verified download %s", res.URL, res.Path)
	return res.File, st.Size(), nil
}

// lookupChecksumFile returns c with the Type and Value that its checksum
// file lists for the local file at path (after checking the file's
// signature when a key is given).
func lookupChecksumFile(ctx context.Context, c *Checksum, path string, say func(string, ...any)) (*Checksum, error) {
	exp, err := fetch.LookupSums(ctx, c.File, c.Signature, c.Key, c.Type, []string{filepath.Base(path)}, fetchOptions(nil, "", say)...)
	if err != nil {
		return nil, fetchError(err)
	}
	listed := *c
	listed.Type, listed.Value = exp.Algorithm, exp.Digest
	return &listed, nil
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
	if o != nil && o.downloadLimits != nil {
		opts = append(opts, fetch.WithLimits(o.downloadLimits[0], o.downloadLimits[1], 0))
	}
	if o != nil && o.progress != nil {
		opts = append(opts, fetch.WithProgress(func(p fetch.Progress) {
			o.emit(Event{Image: image, Stage: stage, Done: p.Done, Total: max(p.Total, 0)})
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
	case fetch.KindInvalid:
		code = CodeInvalidAttribute
	}
	return &Error{Code: code, Msg: fe.Msg, Err: fe}
}

// validateChecksumFile checks the checksum-file fields against each other.
func validateChecksumFile(c *Checksum) error {
	switch {
	case c.File != "" && c.Value != "":
		return newError(CodeInvalidAttribute, nil, "Both a checksum value and a checksum file (%s) are given for the input; give only one", c.File)
	case c.File == "" && (c.Signature != "" || c.Key != ""):
		return newError(CodeInvalidAttribute, nil, "A checksum signature or key is given without a checksum file to verify; give the checksum file too")
	case c.Signature != "" && c.Key == "":
		return newError(CodeMissingAttribute, nil, "Missing attribute: a key to verify the signature %s of the checksum file %s with", c.Signature, c.File)
	}
	return nil
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
