package qcow2

import (
	"errors"
	"os"

	"github.com/ucphhpc/gen-vm-image-go/disk"
)

// Create is a placeholder until the writer lands.
func Create(f *os.File, size int64, opt disk.CreateOptions) (disk.Writer, error) {
	return nil, errors.New("qcow2: writer not implemented yet")
}

// Check is a placeholder until the checker lands.
func Check(f *os.File) (disk.CheckReport, error) {
	return disk.CheckReport{}, errors.New("qcow2: check not implemented yet")
}
