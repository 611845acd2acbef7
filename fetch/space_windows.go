//go:build windows

package fetch

import "golang.org/x/sys/windows"

// freeSpace is what the user may still write on dir's volume
// (GetDiskFreeSpaceEx); ok is false when it cannot be told.
func freeSpace(dir string) (int64, bool) {
	p, err := windows.UTF16PtrFromString(dir)
	if err != nil {
		return 0, false
	}
	var avail, total, free uint64
	if err := windows.GetDiskFreeSpaceEx(p, &avail, &total, &free); err != nil {
		return 0, false
	}
	return int64(avail), true
}
