// Package safefile opens files in directories that someone else may have
// tampered with (a download cache shared between users, an output
// directory): it never follows a symbolic link at the last element of a
// name, never blocks on a FIFO or a device, and refuses anything that is
// not a regular file. Files it opens for writing must also have one link
// and belong to the user (or root), so that a hard link planted under a
// name we write cannot make us write the file it points at.
package safefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Errors, for errors.Is.
var (
	// ErrNotRegular: the name is a symbolic link, a FIFO, a device, a
	// directory or a socket.
	ErrNotRegular = errors.New("not a regular file")
	// ErrForeign: a regular file that belongs to another user, or that
	// has more than one name (a hard link).
	ErrForeign = errors.New("not a file of ours")
)

// Open opens name for reading. A symbolic link, a FIFO, a device or a
// directory at name is ErrNotRegular; the open itself never blocks.
func Open(name string) (*os.File, error) {
	f, err := openNoFollow(name, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	if err := checkRegular(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// OpenInput opens a file the user named for reading, following symbolic
// links (the user chose the name), but like Open never blocking on a FIFO
// or a device and refusing anything that is not a regular file.
func OpenInput(name string) (*os.File, error) {
	f, err := openNonBlocking(name, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	if err := checkRegular(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// OpenOwned is Open for files whose content we trust because we wrote them
// (cache metadata and entries): the file must belong to the effective user
// or to root, else ErrForeign.
func OpenOwned(name string) (*os.File, error) {
	f, err := Open(name)
	if err != nil {
		return nil, err
	}
	if err := checkOwned(f, false); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Create creates name for reading and writing; it fails with fs.ErrExist
// when anything, a link included, is there already.
func Create(name string, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL|noFollow, perm)
}

// OpenWritable opens the regular file of ours at name for reading and
// writing, or creates it. Whatever else is at name (a symbolic link, a
// FIFO, a hard link, another user's file) is removed first: the name is
// ours, the thing planted there is not. created tells which happened. Two
// callers racing to create the file both end up with it.
func OpenWritable(name string, perm os.FileMode) (f *os.File, created bool, err error) {
	for range 10 {
		f, err = openNoFollow(name, os.O_RDWR)
		switch {
		case err == nil:
			if err = checkRegular(f); err == nil {
				err = checkOwned(f, true)
			}
			if err == nil {
				return f, false, nil
			}
			f.Close()
			fallthrough
		case !errors.Is(err, fs.ErrNotExist):
			// A link (ELOOP), a FIFO, someone else's file: replace it.
			if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, false, fmt.Errorf("%s is not a file of ours and cannot be removed: %w", name, err)
			}
		}
		f, err = Create(name, perm)
		if err == nil {
			return f, true, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, false, err
		}
		// Another process created it first: open theirs.
	}
	return nil, false, fmt.Errorf("%s: %w: it keeps changing while it is opened", name, ErrNotRegular)
}

// OpenLock opens (creating it) a file that is only ever locked, never read
// or written: any regular file will do, whoever owns it, so that processes
// of several users sharing a directory still take turns; a link or a FIFO
// at name is replaced.
func OpenLock(name string) (*os.File, error) {
	for range 10 {
		f, err := openNoFollow(name, os.O_RDONLY)
		if err == nil {
			if err = checkRegular(f); err == nil {
				return f, nil
			}
			f.Close()
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%s is not a lock file and cannot be removed: %w", name, err)
			}
		}
		f, err = Create(name, 0o644)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%s: %w: it keeps changing while it is opened", name, ErrNotRegular)
}

func checkRegular(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: %w (%s)", f.Name(), ErrNotRegular, describeMode(st.Mode()))
	}
	return nil
}

func describeMode(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m.IsDir():
		return "a directory"
	}
	return m.Type().String()
}
