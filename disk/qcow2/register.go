package qcow2

import (
	"encoding/binary"
	"io"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

func init() {
	disk.Register(disk.Format{
		Name:      "qcow2",
		Sniff:     Sniff,
		Inspect:   Inspect,
		Open:      Open,
		Create:    Create,
		BlockSize: BlockSize,
		Options:   CreateOptions,
		Validate: func(opt disk.CreateOptions) error {
			if _, err := wrClusterBits(opt); err != nil {
				return err
			}
			_, err := compressionType(opt)
			return err
		},
		Compress:   true,
		Extensions: []string{".qcow2"},
		Check:      Check,
	})
}

// CreateOptions are the -o options Create takes, as qemu-img spells them.
// The writer makes qcow2 version 3 (compat 1.1) with 16-bit refcounts and
// nothing else; the other qemu options are not offered. compression_type
// sets the header's type even without -c, as qemu-img create does.
var CreateOptions = []disk.Option{
	{Name: "cluster_size", Help: "the cluster size: a power of two from 512 to 2M", Default: "64K"},
	{Name: "compat", Help: "the qcow2 version: 1.1 (v3) only", Values: []string{"1.1", "v3"}, Default: "1.1"},
	{Name: "compression_type", Help: "how compressed clusters (-c) are compressed", Values: []string{"zlib", "zstd"}, Default: "zlib"},
}

// Sniff reports whether r starts with the qcow2 magic and a version we know.
func Sniff(r io.ReaderAt, size int64) bool {
	head := blockio.Peek(r, 0, 8)
	if len(head) < 8 || binary.BigEndian.Uint32(head) != Magic {
		return false
	}
	v := binary.BigEndian.Uint32(head[4:])
	return v == 2 || v == 3
}

// BlockSize is the cluster size of an image Create makes with opt: a qcow2
// image allocates whole clusters (qcow2.txt "Host cluster management").
func BlockSize(opt disk.CreateOptions) int64 {
	bits, err := wrClusterBits(opt)
	if err != nil {
		bits = DefaultClusterBits // Create refuses the options anyway
	}
	return int64(1) << bits
}
