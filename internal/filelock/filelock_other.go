//go:build !unix

package filelock

import (
	"context"
	"errors"
	"os"
	"time"
)

const (
	noFollow = 0
	nonBlock = 0
)

// Without flock(2), every lock is an Exclusive lock file.
const flockSupported = false

func acquireFlock(context.Context, string, Options) (*Lock, error) {
	return nil, errors.New("flock is not available on this system")
}

func autoMode(string) Mode { return Exclusive }

// processAlive cannot tell here: a dead holder's lock is taken over when
// it goes stale.
func processAlive(int) bool { return true }

func touch(name string) {
	now := time.Now()
	os.Chtimes(name, now, now)
}
