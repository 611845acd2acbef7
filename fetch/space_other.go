//go:build !unix && !windows

package fetch

// freeSpace cannot be told here.
func freeSpace(string) (int64, bool) { return 0, false }
