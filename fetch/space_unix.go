//go:build unix

package fetch

import "golang.org/x/sys/unix"

// freeSpace is what an unprivileged user may still write on dir's file
// system (statfs(2) f_bavail); ok is false when it cannot be told.
func freeSpace(dir string) (int64, bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), true
}
