package genvm

import (
	"errors"
	"io"
	"os"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/ova"
)

// ovaDisk returns the disk to read from the input file: the file itself,
// or, when it is an OVA appliance, the section of the tar that holds the
// disk its OVF lists first (or the one pick names, counting from 1).
// Nothing is extracted, and names in the tar are never used as paths.
func ovaDisk(f *os.File, size int64, pick int, say func(string, ...any)) (io.ReaderAt, int64, error) {
	if !ova.Is(f, size) {
		if pick != 0 {
			return nil, 0, newError(CodeInvalidAttribute, nil, "Invalid input disk %d for %s: input.disk (--input-disk) picks a disk of an OVA appliance, and this input is not one", pick, f.Name())
		}
		return f, size, nil
	}
	if pick < 0 {
		return nil, 0, newError(CodeInvalidAttribute, nil, "Invalid input disk %d for %s: disks are counted from 1", pick, f.Name())
	}
	a, err := ova.Read(f, size)
	if err != nil {
		return nil, 0, newError(CodeLoadFailed, err, "Failed to load path: %s - error: %v", f.Name(), err)
	}
	d, err := a.Pick(pick)
	if err != nil {
		code := CodeLoadFailed
		if pick > len(a.Disks) && !errors.Is(err, disk.ErrUnsupported) {
			code = CodeInvalidAttribute
		}
		return nil, 0, newError(code, err, "Failed to load path: %s - error: %v", f.Name(), err)
	}
	n := max(pick, 1)
	say("Input %s is an OVA appliance with %d disk(s); reading disk %d, %s (%d bytes), in place", f.Name(), len(a.Disks), n, d.File, d.Size)
	return io.NewSectionReader(f, d.Offset, d.Size), d.Size, nil
}
