package output

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// linkNoReplace gives old the name new unless new exists: link(2) fails
// rather than replace. On file systems without hard links it falls back to
// a check and a rename, which a run racing for the same name could still
// beat.
func linkNoReplace(old, new string) error {
	err := os.Link(old, new)
	if err == nil {
		return os.Remove(old)
	}
	if errors.Is(err, fs.ErrExist) {
		return err
	}
	if _, lerr := os.Lstat(new); lerr == nil {
		return fmt.Errorf("%s: %w", new, fs.ErrExist)
	}
	return os.Rename(old, new)
}
