// Package output is the life of an output file: written under a temporary
// name beside its final one, locked while it is written, synced, and put in
// place by a rename that never replaces an existing file unless asked to.
// A temporary file whose writer is gone (killed, crashed) is recognised by
// its unheld lock and removed by the next run in the same directory.
package output

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ucphhpc/gen-vm-image-go/internal/filelock"
	"github.com/ucphhpc/gen-vm-image-go/internal/safefile"
)

// ErrExists: the final name was taken (by another run, say) while the
// file was written, and the caller did not ask to overwrite.
var ErrExists = errors.New("the output file exists")

// tempMarker is in every temporary name we make, and only in ours: a file
// named so in an output directory, with no process holding its lock, was
// left by a run of ours that died.
const tempMarker = ".tmp-gvi-"

// Temp is a file being written under a temporary name. It holds a lock on
// the file until it is published or aborted.
type Temp struct {
	File  *os.File
	final string
	// dropAfterSync: the file's pages were kept in the page cache while
	// it was written (StartWriteBehindKeepingCache); Publish drops them
	// once they are synced.
	dropAfterSync bool
}

// Create makes a temporary file for final in final's directory, with mode
// perm (not reduced by the umask).
func Create(final string, perm os.FileMode) (*Temp, error) {
	dir, base := filepath.Split(final)
	for range 100 {
		name := filepath.Join(dir, "."+base+tempMarker+randomSuffix())
		f, err := safefile.Create(name, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		// A cleaner may have seen the file between its creation and our
		// lock, taken the free lock and removed the name: then it is not
		// ours any more, and we start again with another name.
		if !tryLock(f) || !sameFile(f, name) {
			f.Close()
			os.Remove(name) // only if it is still the one a cleaner left free
			continue
		}
		if err := f.Chmod(perm); err != nil {
			f.Close()
			os.Remove(name)
			return nil, err
		}
		return &Temp{File: f, final: final}, nil
	}
	return nil, fmt.Errorf("cannot find a free temporary name for %s", final)
}

func randomSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func sameFile(f *os.File, name string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Lstat(name)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// Name is the temporary file's name.
func (t *Temp) Name() string { return t.File.Name() }

// Publish puts the file in place under its final name: synced first
// when durable (and the directory after the rename). Without overwrite an
// existing file at the final name is never replaced: the result is
// ErrExists and the temporary file is removed. Publish closes the file.
func (t *Temp) Publish(overwrite, durable bool) error {
	if durable {
		if err := t.File.Sync(); err != nil {
			t.Abort()
			return err
		}
		if t.dropAfterSync {
			dropCached(t.File)
		}
	}
	// The lock is held until the file has its final name, so that no
	// cleaner can take it for abandoned in between (where an open file
	// cannot be renamed, there is no lock to hold).
	closed := false
	if !renameOpenFiles {
		if err := t.File.Close(); err != nil {
			os.Remove(t.Name())
			return err
		}
		closed = true
	}
	var err error
	if overwrite {
		err = os.Rename(t.Name(), t.final)
	} else {
		err = renameNoReplace(t.Name(), t.final)
	}
	if err != nil {
		os.Remove(t.Name())
		if !closed {
			t.File.Close()
		}
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w", t.final, ErrExists)
		}
		return err
	}
	var closeErr error
	if !closed {
		closeErr = t.File.Close()
	}
	if durable {
		syncDir(filepath.Dir(t.final))
	}
	return closeErr
}

// Abort removes the temporary file.
func (t *Temp) Abort() {
	os.Remove(t.Name())
	t.File.Close()
}

// syncDir makes a rename durable; failure to sync a directory is not worth
// failing a finished file for.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// IsTemp reports whether a name in a directory is one of our temporary
// files.
func IsTemp(name string) bool {
	i := strings.LastIndex(name, tempMarker)
	return strings.HasPrefix(name, ".") && i > 0 && len(name)-i-len(tempMarker) == 12
}

// sharedAbandonedAge: on a shared file system, whose flock may be local
// to a node, a temporary file is taken for abandoned only when, besides
// its lock being free here, nobody has written it for this long; a
// writer on another node writes continuously.
const sharedAbandonedAge = time.Hour

// CleanAbandoned removes the temporary files in dir whose writers are
// gone, and returns their names. A file whose lock is held (a run still
// writing it, in this process or another, on this host or, where the file
// system shares locks, another) is left alone; on a shared file system
// (NFS, Lustre, CephFS, ...), where another node's lock may not be seen,
// so is one written in the last hour.
func CleanAbandoned(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	shared := filelock.ModeFor(filepath.Join(dir, "x")) == filelock.Exclusive
	var removed []string
	for _, e := range entries {
		if !IsTemp(e.Name()) {
			continue
		}
		if info, err := e.Info(); shared && (err != nil || time.Since(info.ModTime()) < sharedAbandonedAge) {
			continue
		}
		name := filepath.Join(dir, e.Name())
		f, err := safefile.Open(name)
		if err != nil {
			continue
		}
		if tryLock(f) && sameFile(f, name) && os.Remove(name) == nil {
			removed = append(removed, name)
		}
		f.Close()
	}
	return removed, nil
}
