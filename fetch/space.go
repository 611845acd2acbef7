package fetch

import (
	"errors"
	"fmt"

	"github.com/ucphhpc/gen-vm-image-go/size"
)

// ErrNoSpace: writing on would leave the cache's file system (nearly) full.
var ErrNoSpace = errors.New("not enough free space")

// Free space we leave on the cache's file system, and how often a download
// or a decompression looks at it.
const (
	minFreeSpace   = 256 << 20
	spaceCheckStep = 64 << 20
)

// spaceGuard fails writes into dir once its file system has less than
// minFreeSpace left: an endless body or a decompression bomb stops there,
// not at a full disk that breaks everything else on it.
type spaceGuard struct {
	dir   string
	since int64 // bytes written since the last look
}

func (g *spaceGuard) wrote(n int64) error {
	g.since += n
	if g.since < spaceCheckStep {
		return nil
	}
	g.since = 0
	if free, ok := freeSpace(g.dir); ok && free < minFreeSpace {
		return fmt.Errorf("%w in %s: %s left, and %s are kept free", ErrNoSpace, g.dir, size.Format(free), size.Format(minFreeSpace))
	}
	return nil
}
