package record

import (
	"context"
	"path/filepath"

	"github.com/ucphhpc/gen-vm-image-go/internal/filelock"
)

// lockDir takes dir's record lock: flock, or a lock file where the
// directory is on a shared file system whose flock may be local to a node
// (filelock), so that tasks of a job array on several nodes never lose
// each other's entries.
func lockDir(ctx context.Context, dir string, mode filelock.Mode) (unlock func(), err error) {
	l, err := filelock.Acquire(ctx, filepath.Join(dir, lockName), filelock.Options{Mode: mode})
	if err != nil {
		return nil, err
	}
	return l.Release, nil
}
