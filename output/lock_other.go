//go:build !unix

package output

import "os"

// tryLock: without flock(2) a writer cannot be told from an abandoned file,
// so temporary files are never taken for abandoned (and never cleaned).
func tryLock(f *os.File) bool { return false }

// renameOpenFiles: the file system lets a file be renamed while it is open.
const renameOpenFiles = false
