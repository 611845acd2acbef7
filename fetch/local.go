package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ucphhpc/gen-vm-image-go/internal/safefile"
	"github.com/ucphhpc/gen-vm-image-go/size"
)

// Compression names the compression of a file from its first bytes (at
// least 10 of them): "gzip", "xz", "bzip2", "zstd", or "" for none.
func Compression(head []byte) string { return sniffCompression(head) }

// localMeta is local/KEY.json: which file a decompressed copy was made
// from, as the file system identifies it, and the copy's digest.
type localMeta struct {
	Path        string    `json:"path"`
	Size        int64     `json:"size"`
	ModTime     time.Time `json:"mtime"`
	Compression string    `json:"compression"`
	ImageSize   int64     `json:"image_size"`
	ImageDigest string    `json:"image_digest"`
}

// DecompressLocal returns the decompressed copy of the compressed local
// file f, as it is in the download cache: made there (streaming, sparse,
// never beside the input) the first time, and reused while the file is
// unchanged (same path, size and modification time) and the copy still has
// the digest recorded for it. f is read through the descriptor given,
// never reopened by name. Result.Path and Result.File are the copy.
func DecompressLocal(ctx context.Context, f *os.File, cacheDir string, opts ...Option) (*Result, error) {
	o := newOptions(opts)
	res := &Result{}
	o.messages = &res.Messages
	err := decompressLocal(ctx, f, cacheDir, o, res)
	return res, err
}

func decompressLocal(ctx context.Context, f *os.File, cacheDir string, o *options, res *Result) error {
	st, err := f.Stat()
	if err != nil {
		return newError(KindCache, f.Name(), err, "Failed to read %s: %v", f.Name(), err)
	}
	abs, _ := filepath.Abs(f.Name())
	head := make([]byte, sniffLen)
	n, _ := f.ReadAt(head, 0)
	kind := sniffCompression(head[:n])
	if kind == "" {
		return newError(KindInvalid, abs, nil, "%s is not compressed", abs)
	}
	if cacheDir == "" {
		if cacheDir, err = DefaultCacheDir(); err != nil {
			return newError(KindCache, abs, err, "Failed to create the cache for the decompressed copy of %s: %v", abs, err)
		}
	}
	dir := filepath.Join(cacheDir, "local")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return newError(KindCache, abs, err, "Failed to create the cache %s: %v", dir, err)
	}
	if err := checkCacheDir(dir); err != nil {
		return newError(KindCache, abs, err, "Refusing the cache %s: %v", dir, err)
	}
	id := sha256.Sum256([]byte(abs))
	key := hex.EncodeToString(id[:16])
	if name := safeName(filepath.Base(abs)); name != "" {
		key += "-" + name
	}
	e := entry{url: abs, base: filepath.Join(dir, key)}
	lock, err := o.lock(ctx, e.lock(), func() { o.say("Waiting for another gen-vm-image that is decompressing %s", abs) })
	if err != nil {
		if ctx.Err() != nil {
			return newError(KindCache, abs, errors.Join(ErrInterrupted, err), "Interrupted while waiting to decompress %s", abs)
		}
		return newError(KindCache, abs, err, "Failed to lock the cache for %s: %v", abs, err)
	}
	defer lock.Release()

	want := localMeta{Path: abs, Size: st.Size(), ModTime: st.ModTime().UTC(), Compression: kind}
	if hit, err := reuseLocal(ctx, o, e, want, res); hit || err != nil {
		return err
	}

	o.say("Decompressing the %s data of %s into %s", kind, abs, e.image())
	start := time.Now()
	s := newSink(e.imagePartial())
	buf := make([]byte, chunkSize)
	for off := int64(0); off < st.Size(); {
		if err := ctx.Err(); err != nil {
			s.abort()
			return newError(KindCache, abs, errors.Join(ErrInterrupted, err), "Interrupted while decompressing %s", abs)
		}
		n, err := f.ReadAt(buf[:min(int64(len(buf)), st.Size()-off)], off)
		s.write(buf[:n])
		off += int64(n)
		if o.progress != nil {
			o.progress(Progress{URL: abs, Done: off, Total: st.Size()})
		}
		if err != nil && !(errors.Is(err, io.EOF) && off == st.Size()) {
			s.abort()
			return newError(KindCache, abs, err, "Failed to read %s: %v", abs, err)
		}
	}
	dec, err := s.finish()
	if err != nil {
		s.abort()
		if errors.Is(err, ErrNoSpace) {
			return newError(KindCache, abs, err, "Failed to decompress %s: %v", abs, err)
		}
		return newError(KindInvalid, abs, err, "Failed to decompress %s (%s data, as its first bytes say): %v", abs, kind, err)
	}
	os.Remove(e.meta())
	if err := os.Rename(e.imagePartial(), e.image()); err != nil {
		dec.file.Close()
		s.abort()
		return newError(KindCache, abs, err, "Failed to put the decompressed copy of %s in place: %v", abs, err)
	}
	want.ImageSize, want.ImageDigest = dec.size, dec.digest
	writeJSON(e.meta(), want) // without it the next run decompresses again: no harm done
	o.say("Decompressed %s: %d bytes (%s) in %v", abs, dec.size, size.Format(dec.size), time.Since(start).Round(time.Millisecond))
	*res = Result{Path: e.image(), File: dec.file, Published: abs, URL: abs, Compression: kind, Size: st.Size(), Messages: res.Messages}
	return nil
}

// reuseLocal uses the cached copy when it was made from this very file
// and still has its digest.
func reuseLocal(ctx context.Context, o *options, e entry, want localMeta, res *Result) (bool, error) {
	data, err := readSmall(e.meta())
	if err != nil {
		return false, nil
	}
	var m localMeta
	if len(data) > maxMetaSize || json.Unmarshal(data, &m) != nil || m.Path != want.Path || m.Size != want.Size ||
		!m.ModTime.Equal(want.ModTime) || m.Compression != want.Compression || m.ImageSize < 0 {
		return false, nil
	}
	img, err := safefile.OpenOwned(e.image())
	if err != nil {
		return false, nil
	}
	if st, err := img.Stat(); err != nil || st.Size() != m.ImageSize {
		img.Close()
		return false, nil
	}
	got, err := imageDigestOf(ctx, img, m.ImageSize)
	if err != nil || got != m.ImageDigest {
		img.Close()
		if ctx.Err() != nil {
			return false, newError(KindCache, want.Path, errors.Join(ErrInterrupted, ctx.Err()), "Interrupted while checking the decompressed copy of %s", want.Path)
		}
		o.say("The decompressed copy of %s in the cache is damaged; decompressing it again", want.Path)
		return false, nil
	}
	o.say("Cache hit: the decompressed copy of %s at %s was made from this file (%s, modified %s) and is whole", want.Path, e.image(), size.Format(want.Size), want.ModTime.Format(time.RFC3339))
	*res = Result{Path: e.image(), File: img, Published: want.Path, URL: want.Path, Compression: m.Compression, Size: m.Size, CacheHit: true, Messages: res.Messages}
	return true, nil
}
