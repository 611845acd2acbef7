package genvm

import (
	"fmt"
	"path/filepath"
)

// DefaultOutputDirectory is where images go when no directory is given.
const DefaultOutputDirectory = "generated-images"

// DefaultFormat is the output format when none is given.
const DefaultFormat = "qcow2"

// OutputName is the file name of an image: NAME.FORMAT, or
// NAME-VERSION.FORMAT when a version is set (the reference's naming).
func OutputName(name, version, format string) string {
	if version != "" {
		return fmt.Sprintf("%s-%s.%s", name, version, format)
	}
	return fmt.Sprintf("%s.%s", name, format)
}

// OutputPath joins the output directory and OutputName.
func OutputPath(dir, name, version, format string) string {
	if dir == "" {
		dir = DefaultOutputDirectory
	}
	return filepath.Join(dir, OutputName(name, version, format))
}
