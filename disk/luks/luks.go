// Package luks recognises LUKS encrypted containers, which qemu can use as
// disk images, and refuses them: an encrypted image cannot be read without
// its key.
package luks

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

func init() {
	disk.Register(disk.Format{Name: "luks", Sniff: Sniff, Inspect: Inspect})
}

// magic starts the LUKS header (version 1 and 2 alike).
var magic = []byte("LUKS\xba\xbe")

// Sniff recognises the magic.
func Sniff(r io.ReaderAt, _ int64) bool {
	return bytes.Equal(blockio.Peek(r, 0, len(magic)), magic)
}

// Inspect refuses every LUKS container, naming its version.
func Inspect(r io.ReaderAt, _ int64, _ disk.Limits) (disk.Facts, error) {
	version := uint16(0)
	if b := blockio.Peek(r, 0, 8); len(b) == 8 {
		version = binary.BigEndian.Uint16(b[6:])
	}
	return disk.Facts{}, fmt.Errorf("luks: %w: a LUKS (version %d) encrypted container: encrypted images cannot be read; decrypt it first and pass the result",
		disk.ErrUnsupported, version)
}
