//go:build unix

package safefile

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

const noFollow = unix.O_NOFOLLOW

// openNoFollow opens name with O_NOFOLLOW and O_NONBLOCK, so that neither a
// link nor a FIFO (whose open waits for a writer) can catch us, then clears
// O_NONBLOCK: reads of a regular file do not care, but the runtime would
// otherwise treat the descriptor as pollable.
func openNoFollow(name string, flag int) (*os.File, error) {
	return openNonBlocking(name, flag|unix.O_NOFOLLOW)
}

func openNonBlocking(name string, flag int) (*os.File, error) {
	var fd int
	var err error
	for {
		fd, err = unix.Open(name, flag|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fcntl", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// checkOwned: the file belongs to us or to root; forWriting also wants a
// single link, since writing through a second name would change a file we
// never meant to.
func checkOwned(f *os.File, forWriting bool) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	uid := os.Geteuid()
	if int(sys.Uid) != uid && sys.Uid != 0 {
		return fmt.Errorf("%s: %w: it belongs to user %d", f.Name(), ErrForeign, sys.Uid)
	}
	if forWriting && sys.Nlink != 1 {
		return fmt.Errorf("%s: %w: it has %d names (hard links)", f.Name(), ErrForeign, sys.Nlink)
	}
	return nil
}
