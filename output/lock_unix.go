//go:build unix

package output

import (
	"os"

	"golang.org/x/sys/unix"
)

// tryLock takes an exclusive flock(2) on f without waiting. The lock lives
// as long as the open file: a killed writer leaves it free.
func tryLock(f *os.File) bool {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EINTR {
			return err == nil
		}
	}
}

// renameOpenFiles: the file system lets a file be renamed while it is open.
const renameOpenFiles = true
