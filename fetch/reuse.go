package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/ucphhpc/gen-vm-image-go/checksum"
	"github.com/ucphhpc/gen-vm-image-go/internal/safefile"
)

// useCached checks a complete entry and, when it may be used, fills res
// with it. Every file that becomes an image is checked against the digest
// recorded for it, through the descriptor that is then handed on: the
// download (its SHA-256, and the checksum asked for), or, for a compressed
// download, the decompressed copy (its image digest), since the download
// itself is not used then. A miss (false, nil) says why and forgets the
// entry when it is damaged.
func useCached(ctx context.Context, o *options, e entry, m *entryMeta, want *checksum.Expected, res *Result) (bool, error) {
	miss := func(format string, args ...any) (bool, error) {
		o.say("The cached copy of %s %s; downloading it again", e.url, fmt.Sprintf(format, args...))
		return false, nil
	}
	damaged := func(format string, args ...any) (bool, error) {
		e.removeComplete()
		return miss(format, args...)
	}
	key := ""
	if want != nil {
		key = digestKey(want.Algorithm, want.ReadBytes)
		if got, ok := m.Digests[key]; ok && got != want.Digest {
			return miss("has the %s checksum %s, not %s", want.Algorithm, got, want.Digest)
		}
	}
	dl, err := safefile.OpenOwned(e.download())
	if err != nil {
		return miss("cannot be used (%v)", err)
	}
	keep := false
	defer func() {
		if !keep {
			dl.Close()
		}
	}()
	if st, err := dl.Stat(); err != nil || st.Size() != m.Size {
		return damaged("is not the size it was downloaded at (%d bytes)", m.Size)
	}

	digest := ""
	if want != nil {
		digest = m.Digests[key]
	}
	// The download is read when it is the image, or when the checksum
	// asked for is not on record yet.
	if m.Compression == "" || digest == "" {
		sum, wantSum, err := hashDownload(ctx, dl, m.Size, want)
		if err != nil {
			if ctx.Err() != nil {
				return false, newError(KindChecksum, e.url, errors.Join(ErrInterrupted, err), "Interrupted while calculating the checksum of the cached copy of %s", e.url)
			}
			return damaged("cannot be read (%v)", err)
		}
		if sum != m.SHA256 {
			return damaged("is damaged: its sha256 is %s, not the %s it was downloaded with", sum, m.SHA256)
		}
		if want != nil {
			digest = wantSum
			if digest != want.Digest {
				return miss("has the %s checksum %s, not %s", want.Algorithm, digest, want.Digest)
			}
			if _, ok := m.Digests[key]; !ok {
				if m.Digests == nil {
					m.Digests = digestMap{}
				}
				m.Digests[key] = digest
				writeJSON(e.meta(), m) // a record for next time; not needed now
			}
		}
	}

	file, path := dl, e.download()
	if m.Compression != "" {
		img, err := safefile.OpenOwned(e.image())
		if err != nil {
			return damaged("has no usable decompressed copy (%v)", err)
		}
		if st, err := img.Stat(); err != nil || st.Size() != m.ImageSize {
			img.Close()
			return damaged("has a decompressed copy that is not the size it was made at (%d bytes)", m.ImageSize)
		}
		got, err := imageDigestOf(ctx, img, m.ImageSize)
		if err != nil {
			img.Close()
			if ctx.Err() != nil {
				return false, newError(KindChecksum, e.url, errors.Join(ErrInterrupted, err), "Interrupted while checking the decompressed copy of %s", e.url)
			}
			return damaged("has a decompressed copy that cannot be read (%v)", err)
		}
		if got != m.ImageDigest {
			img.Close()
			return damaged("has a damaged decompressed copy (its digest is %s, not %s)", got, m.ImageDigest)
		}
		file, path = img, e.image()
	} else {
		keep = true
	}
	fillResult(res, e, m, path, file, want, digest, true)
	return true, nil
}

// hashDownload reads a cached download once and returns its SHA-256 and,
// when want is set, the digest it asks for.
func hashDownload(ctx context.Context, f *os.File, size int64, want *checksum.Expected) (sum, wantSum string, err error) {
	sha := sha256.New()
	var w io.Writer = sha
	var wantHash hash.Hash
	if want != nil && !(want.Algorithm == "sha256" && want.ReadBytes == 0) {
		if wantHash, err = checksum.New(want.Algorithm); err != nil {
			return "", "", err
		}
		w = io.MultiWriter(sha, checksum.NewLimited(wantHash, want.ReadBytes))
	}
	// The buffer size never changes a digest (checksum.Digest), so the
	// one asked for is not needed here.
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return "", "", err
		}
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		w.Write(buf[:n])
		off += int64(n)
		if err != nil && !(errors.Is(err, io.EOF) && off == size) {
			return "", "", err
		}
	}
	sum = hex.EncodeToString(sha.Sum(nil))
	switch {
	case want == nil:
	case wantHash == nil:
		wantSum = sum
	default:
		wantSum = hex.EncodeToString(wantHash.Sum(nil))
	}
	return sum, wantSum, nil
}

// fillResult fills res from a complete entry whose image file is open.
func fillResult(res *Result, e entry, m *entryMeta, path string, file *os.File, want *checksum.Expected, digest string, hit bool) {
	*res = Result{Path: path, File: file, Published: e.download(), URL: e.url, Compression: m.Compression,
		Size: m.Size, SHA256: m.SHA256, CacheHit: hit, Messages: res.Messages}
	if want != nil {
		res.Algorithm, res.Digest = want.Algorithm, digest
	}
}
