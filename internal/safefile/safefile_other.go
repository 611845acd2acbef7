//go:build !unix

package safefile

import (
	"fmt"
	"os"
)

const noFollow = 0

// openNoFollow refuses a link at name and checks that what it opened is
// what it looked at; without O_NOFOLLOW a swap between the two is caught
// by the comparison.
func openNoFollow(name string, flag int) (*os.File, error) {
	before, err := os.Lstat(name)
	if err != nil {
		return nil, err
	}
	if !before.Mode().IsRegular() {
		return nil, &os.PathError{Op: "open", Path: name, Err: fmt.Errorf("%w (%s)", ErrNotRegular, describeMode(before.Mode()))}
	}
	f, err := os.OpenFile(name, flag, 0)
	if err != nil {
		return nil, err
	}
	after, err := f.Stat()
	if err != nil || !os.SameFile(before, after) {
		f.Close()
		return nil, &os.PathError{Op: "open", Path: name, Err: fmt.Errorf("%w: it changed while it was opened", ErrNotRegular)}
	}
	return f, nil
}

// checkOwned has nothing to check where files have no owner uid.
func checkOwned(*os.File, bool) error { return nil }

// openNonBlocking: where FIFOs cannot block an open, a plain open.
func openNonBlocking(name string, flag int) (*os.File, error) { return os.OpenFile(name, flag, 0) }
