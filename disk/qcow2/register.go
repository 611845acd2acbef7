package qcow2

import (
	"encoding/binary"
	"io"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

func init() {
	disk.Register(disk.Format{
		Name:       "qcow2",
		Sniff:      Sniff,
		Inspect:    Inspect,
		Open:       Open,
		Create:     Create,
		BlockSize:  BlockSize,
		Extensions: []string{".qcow2"},
		Check:      Check,
	})
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
	bits, err := wrClusterBits(opt.ClusterSize)
	if err != nil {
		bits = DefaultClusterBits // Create refuses the options anyway
	}
	return int64(1) << bits
}
