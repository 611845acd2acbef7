package genvm

import (
	"fmt"
	"path/filepath"
	"strings"
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

// checkFileComponent refuses names and versions that would put the image
// outside the output directory or hide it there.
func checkFileComponent(what, s string) error {
	switch {
	case s == "" && what == "name":
		return fmt.Errorf("the image name is empty")
	case strings.ContainsAny(s, "/\\"):
		return fmt.Errorf("the image %s %q contains a path separator; it must be a plain file name", what, s)
	case strings.ContainsRune(s, 0):
		return fmt.Errorf("the image %s %q contains a NUL byte", what, s)
	case what == "name" && strings.HasPrefix(s, "."):
		return fmt.Errorf("the image name %q starts with a dot; it would be hidden or escape the output directory", s)
	case s == "..":
		return fmt.Errorf("the image %s %q would escape the output directory", what, s)
	}
	return nil
}
