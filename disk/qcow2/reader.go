package qcow2

import (
	"errors"
	"os"

	"github.com/ucphhpc/gen-vm-image-go/disk"
)

// Open is a placeholder until the reader lands.
func Open(f *os.File, opt disk.OpenOptions) (disk.Image, error) {
	return nil, errors.New("qcow2: reader not implemented yet")
}
