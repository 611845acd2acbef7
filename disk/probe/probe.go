// Package probe registers the disk formats we can recognise but not yet read,
// so that such an input is refused with its real name instead of being
// mistaken for raw (a VMDK copied as raw bytes is not a disk), and so that
// a file matching several formats is caught as a polyglot. A format package
// that learns to read one of these takes its entry out of this list.
package probe

import (
	"bytes"
	"encoding/binary"
	"io"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

func init() {
	for _, f := range formats {
		disk.Register(disk.Format{Name: f.name, Sniff: f.sniff})
	}
}

type format struct {
	name  string
	sniff func(r io.ReaderAt, size int64) bool
}

// formats, with the magic qemu's probes (block/*.c) and the specifications use.
var formats = []format{
	{"vdi", func(r io.ReaderAt, _ int64) bool {
		b := blockio.Peek(r, 0x40, 4)
		return len(b) == 4 && binary.LittleEndian.Uint32(b) == 0xbeda107f
	}},
	{"qed", prefix(0, []byte("QED\x00"))},
	{"parallels", func(r io.ReaderAt, _ int64) bool {
		b := blockio.Peek(r, 0, 16)
		return bytes.Equal(b, []byte("WithoutFreeSpace")) || bytes.Equal(b, []byte("WithouFreSpacExt"))
	}},
	{"luks", prefix(0, []byte("LUKS\xba\xbe"))},
	{"qcow", func(r io.ReaderAt, _ int64) bool { // qcow version 1
		b := blockio.Peek(r, 0, 8)
		return len(b) == 8 && binary.BigEndian.Uint32(b) == 0x514649fb && binary.BigEndian.Uint32(b[4:]) == 1
	}},
	{"bochs", prefix(0, []byte("Bochs Virtual HD Image"))},
	{"cloop", prefix(0, []byte("#!/bin/sh\n#V2.0 Format\n"))},
	{"dmg", func(r io.ReaderAt, size int64) bool {
		return size >= 512 && bytes.Equal(blockio.Peek(r, size-512, 4), []byte("koly"))
	}},
}

func prefix(off int64, magic []byte) func(io.ReaderAt, int64) bool {
	return func(r io.ReaderAt, _ int64) bool { return bytes.Equal(blockio.Peek(r, off, len(magic)), magic) }
}
