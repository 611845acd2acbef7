//go:build unix

package fetch

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// checkDirOwner: the directory belongs to us or to root.
func checkDirOwner(st fs.FileInfo) error {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() && sys.Uid != 0 {
		return fmt.Errorf("it belongs to user %d; use a cache directory of your own (--cache-dir)", sys.Uid)
	}
	return nil
}
