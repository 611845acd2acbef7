package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync"

	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// The digest recorded for a decompressed copy (KEY.image): SHA-256 over the
// SHA-256 of each digestBlock of the file in order, where a block of zeros
// contributes the digest of zeros without being hashed. A disk image is
// mostly zeros, so checking a copy costs a read of it and a hash of its
// data only, and the blocks are hashed on every core.
const (
	digestBlock  = 1 << 20
	imageDigestV = "sha256-1m:" // names the construction in KEY.json
)

// zeros is read only: a block's leading zeros, when they must be hashed.
var zeros [digestBlock]byte

var zeroBlockDigest = sync.OnceValue(func() []byte {
	s := sha256.Sum256(make([]byte, digestBlock))
	return s[:]
})

// zerosDigest is the SHA-256 of n zero bytes (n <= digestBlock).
func zerosDigest(n int) []byte {
	if n == digestBlock {
		return zeroBlockDigest()
	}
	s := sha256.Sum256(make([]byte, n))
	return s[:]
}

// blockDigester computes the image digest of bytes written to it in order.
type blockDigester struct {
	outer hash.Hash
	block hash.Hash
	n     int  // bytes of the current block so far
	zero  bool // the current block's bytes so far are all zeros
}

func newBlockDigester() *blockDigester {
	return &blockDigester{outer: sha256.New(), block: sha256.New(), zero: true}
}

func (d *blockDigester) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		part := p[:min(len(p), digestBlock-d.n)]
		if d.zero && !blockio.IsZero(part) {
			// The block turns out to have data: hash the zeros it began with.
			d.block.Reset()
			d.block.Write(zeros[:d.n])
			d.zero = false
		}
		if !d.zero {
			d.block.Write(part)
		}
		d.n += len(part)
		p = p[len(part):]
		if d.n == digestBlock {
			d.endBlock()
		}
	}
	return total, nil
}

func (d *blockDigester) endBlock() {
	if d.zero {
		d.outer.Write(zerosDigest(d.n))
	} else {
		d.outer.Write(d.block.Sum(nil))
	}
	d.n, d.zero = 0, true
}

// sum ends the last block and returns the digest as KEY.json records it.
func (d *blockDigester) sum() string {
	if d.n > 0 {
		d.endBlock()
	}
	return imageDigestV + hex.EncodeToString(d.outer.Sum(nil))
}

// imageDigestOf reads the size bytes of r and returns their image digest,
// hashing blocks on every core; memory stays at a few blocks per core.
func imageDigestOf(ctx context.Context, r io.ReaderAt, size int64) (string, error) {
	workers := max(runtime.GOMAXPROCS(0), 1)
	const batch = 64 // blocks hashed before their digests are taken in order
	blocks := (size + digestBlock - 1) / digestBlock
	outer := sha256.New()
	digests := make([][]byte, batch)
	bufs := make([][]byte, workers)
	for i := range bufs {
		bufs[i] = make([]byte, digestBlock)
	}
	for first := int64(0); first < blocks; first += batch {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n := int(min(batch, blocks-first))
		var wg sync.WaitGroup
		errs := make([]error, workers)
		for w := range workers {
			wg.Go(func() {
				for i := w; i < n; i += workers {
					off := (first + int64(i)) * digestBlock
					buf := bufs[w][:min(digestBlock, size-off)]
					if _, err := r.ReadAt(buf, off); err != nil && !(errors.Is(err, io.EOF) && off+int64(len(buf)) == size) {
						errs[w] = fmt.Errorf("reading at byte %d: %w", off, err)
						return
					}
					if blockio.IsZero(buf) {
						digests[i] = zerosDigest(len(buf))
					} else {
						s := sha256.Sum256(buf)
						digests[i] = s[:]
					}
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return "", err
		}
		for _, d := range digests[:n] {
			outer.Write(d)
		}
	}
	return imageDigestV + hex.EncodeToString(outer.Sum(nil)), nil
}
