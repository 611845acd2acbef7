// Package probe registers the disk formats we recognise by their magic
// alone: their headers hold nothing that could refer to another file or
// that we would read before we can read the format. Recognising them
// refuses such an input under its real name instead of taking it for raw
// (a DMG copied as raw bytes is not a disk), and catches a file that also
// matches another format as a polyglot.
//
// A format whose headers need inspecting (references to other files,
// encryption, geometry to bound) gets a package of its own, as vmdk, vpc,
// vhdx, vdi, qed, parallels, luks and qcow have; so does one that learns to
// be read.
package probe

import (
	"bytes"
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

// formats, with the magic qemu's probes (block/*.c) use.
var formats = []format{
	{"bochs", prefix([]byte("Bochs Virtual HD Image"))},
	{"cloop", prefix([]byte("#!/bin/sh\n#V2.0 Format\n"))},
	{"dmg", func(r io.ReaderAt, size int64) bool { // the "koly" trailer
		return size >= 512 && bytes.Equal(blockio.Peek(r, size-512, 4), []byte("koly"))
	}},
}

func prefix(magic []byte) func(io.ReaderAt, int64) bool {
	return func(r io.ReaderAt, _ int64) bool { return bytes.Equal(blockio.Peek(r, 0, len(magic)), magic) }
}
