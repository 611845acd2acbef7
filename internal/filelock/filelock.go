// Package filelock is the lock that runs on one machine, or on many nodes
// sharing a directory, take turns with: one download per URL, one update
// of a record at a time.
//
// Two kinds of lock serve:
//
//   - Flock: flock(2) on a lock file. It goes with the process, so a
//     crashed holder never leaves a stale lock; it is what a local file
//     system offers. On a shared file system it is coherent only where the
//     file system makes it so (NFSv4, Lustre mounted with -o flock); with
//     Lustre's localflock, or on a file system without locks, two nodes
//     would both hold it.
//   - Exclusive: a lock file created with O_EXCL, which every shared file
//     system makes atomic across nodes, holding its owner (host, PID, a
//     random token). The holder touches it every few seconds; a waiter
//     takes over a lock whose owner is a dead process on its own host, or
//     whose file has not changed for Stale (default 30 s) while it
//     watched, so a crashed node delays the others, never stops them. The
//     waiter's own clock measures that, never a time stored by another
//     node, so clock skew between nodes does not matter.
//
// Auto, the default, takes Exclusive on the shared file systems where
// flock may be local to a node (NFS, Lustre, CephFS, GPFS, BeeGFS, SMB)
// and Flock elsewhere. GVI_LOCK_MODE (see ParseMode) lets a site choose.
package filelock

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Mode is how a lock is taken.
type Mode int

const (
	Auto Mode = iota
	Flock
	Exclusive
)

func (m Mode) String() string {
	switch m {
	case Flock:
		return "flock"
	case Exclusive:
		return "file"
	}
	return "auto"
}

// ParseMode reads a mode as GVI_LOCK_MODE spells it: auto, flock or file
// ("" is auto).
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return Auto, nil
	case "flock":
		return Flock, nil
	case "file", "exclusive":
		return Exclusive, nil
	}
	return Auto, fmt.Errorf("unknown lock mode %q: use auto (flock on local file systems, lock files on shared ones), flock, or file (O_EXCL lock files, for shared file systems whose flock is not coherent across nodes)", s)
}

// DefaultStale is how long an Exclusive lock file may stay unchanged
// before a waiter takes it over.
const DefaultStale = 30 * time.Second

// Options are a lock's settings; the zero value is Auto with DefaultStale.
type Options struct {
	Mode Mode
	// Waiting is called once when the lock is held by another process.
	Waiting func()
	// Stale is how long an Exclusive lock may go untouched (default
	// DefaultStale). The holder touches it every Stale/6.
	Stale time.Duration
}

// Lock is a held lock.
type Lock struct {
	release func()
}

// Acquire takes the lock named name (a file, created as needed; its
// directory must exist), waiting until it is free or ctx ends.
func Acquire(ctx context.Context, name string, opt Options) (*Lock, error) {
	if opt.Stale <= 0 {
		opt.Stale = DefaultStale
	}
	mode := opt.Mode
	if mode == Auto {
		mode = autoMode(name)
	}
	if mode == Flock && flockSupported {
		return acquireFlock(ctx, name, opt)
	}
	return acquireExclusive(ctx, name, opt)
}

// Release lets the lock go and removes its file, so that directories keep
// no lock files.
func (l *Lock) Release() {
	if l != nil && l.release != nil {
		l.release()
		l.release = nil
	}
}

// ModeFor says which mode Auto picks for a lock file in dir, for -v.
func ModeFor(name string) Mode { return autoMode(name) }

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
