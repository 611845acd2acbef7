//go:build unix

package fetch

import (
	"os"
	"syscall"
	"testing"
)

// allocated is how many bytes the file system holds for path.
func allocated(t *testing.T, path string) (int64, bool) {
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int64(sys.Blocks) * 512, true
}
