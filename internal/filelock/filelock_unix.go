//go:build unix

package filelock

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ucphhpc/gen-vm-image-go/internal/safefile"
)

const (
	noFollow = syscall.O_NOFOLLOW
	nonBlock = syscall.O_NONBLOCK
)

const flockSupported = true

// acquireFlock takes flock(2) on name, creating the file (a link or a FIFO
// planted at name is replaced, never opened). The holder removes the file
// on release, so a waiter that then gets the lock on the removed file sees
// that the name is gone (or is another file) and starts again.
func acquireFlock(ctx context.Context, name string, opt Options) (*Lock, error) {
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
			if !told && opt.Waiting != nil {
				opt.Waiting()
				told = true
			}
			if err := sleep(ctx, 50*time.Millisecond); err != nil {
				f.Close()
				return nil, err
			}
		}
		if sameFile(f, name) {
			return &Lock{release: func() {
				os.Remove(name)
				unix.Flock(int(f.Fd()), unix.LOCK_UN)
				f.Close()
			}}, nil
		}
		f.Close() // the holder removed it: a lock on a name nobody sees
	}
}

func sameFile(f *os.File, name string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Lstat(name)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// processAlive: signal 0 reaches the process, or it exists but is not ours.
func processAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}
