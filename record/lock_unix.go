//go:build unix

package record

import (
	"context"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ucphhpc/gen-vm-image-go/internal/safefile"
)

// lockDir takes dir's record lock, an flock(2) on a file that stays: a
// killed run's lock goes with its process.
func lockDir(ctx context.Context, dir string) (unlock func(), err error) {
	f, err := safefile.OpenLock(filepath.Join(dir, lockName))
	if err != nil {
		return nil, err
	}
	// Polled rather than blocking, so that a cancelled run stops waiting;
	// the record is rewritten in milliseconds.
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}
