//go:build !linux

package output

// renameNoReplace renames old to new unless new exists (fs.ErrExist), by
// link and unlink.
func renameNoReplace(old, new string) error { return linkNoReplace(old, new) }
