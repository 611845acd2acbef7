package genvm

import (
	"path/filepath"

	"github.com/ucphhpc/gen-vm-image-go/arch"
)

// DefaultOutputDirectory is where images go when no directory is given.
const DefaultOutputDirectory = "generated-images"

// OutputPath is where an image is written: arch.OutputName in dir, or in
// DefaultOutputDirectory when dir is "".
func OutputPath(dir, name, version, format string) string {
	if dir == "" {
		dir = DefaultOutputDirectory
	}
	return filepath.Join(dir, arch.OutputName(name, version, format))
}
