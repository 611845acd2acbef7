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
// goes with the process: a crashed holder never leaves a stale lock. The
// holder removes the file when it is done, so that the cache keeps no lock
// files; a waiter that then gets the lock on the removed file sees that
// the name is gone (or is another file) and starts again.
type fileLock struct {
	f    *os.File
	name string
}

// lockFile takes the lock on name, creating the file (a link or a FIFO
// planted at name is replaced, never opened). When another process holds
// it, waiting is called once and the lock is polled until it is free or
// ctx ends.
func lockFile(ctx context.Context, name string, waiting func()) (*fileLock, error) {
	told := false
	for {
		f, err := safefile.OpenLock(name)
		if err != nil {
			return nil, err
		}
		for {
			err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
			if err == nil {
				break
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
		if sameFile(f, name) {
			return &fileLock{f: f, name: name}, nil
		}
		f.Close() // the holder removed it: a lock on a name nobody sees
	}
}

func sameFile(f *os.File, name string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Lstat(name)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// unlock removes the lock file, then releases the lock.
func (l *fileLock) unlock() {
	os.Remove(l.name)
	unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	l.f.Close()
}
