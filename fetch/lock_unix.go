//go:build unix

package fetch

import (
	"context"
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ucphhpc/gen-vm-image-go/internal/safefile"
)

// fileLock is an exclusive flock(2) on a lock file, so that two processes
// fetching one URL take turns instead of writing the same files. The lock
// goes with the process: a crashed holder never leaves a stale lock.
type fileLock struct{ f *os.File }

// lockFile takes the lock on name, creating the file (a link or a FIFO
// planted at name is replaced, never opened). When another
// process holds it, waiting is called once and the lock is polled until it
// is free or ctx ends.
func lockFile(ctx context.Context, name string, waiting func()) (*fileLock, error) {
	f, err := safefile.OpenLock(name)
	if err != nil {
		return nil, err
	}
	told := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return &fileLock{f}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, err
		}
		if !told && waiting != nil {
			waiting()
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (l *fileLock) unlock() {
	unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	l.f.Close()
}
