//go:build !unix

package fetch

import "context"

// fileLock is a no-op where flock(2) does not exist: concurrent fetches of
// one URL are not coordinated there.
type fileLock struct{}

func lockFile(ctx context.Context, name string, waiting func()) (*fileLock, error) {
	return &fileLock{}, ctx.Err()
}

func (l *fileLock) unlock() {}
