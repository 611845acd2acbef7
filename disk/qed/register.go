package qed

import "github.com/ucphhpc/gen-vm-image-go/disk"

func init() {
	disk.Register(disk.Format{
		Name:      "qed",
		Sniff:     Sniff,
		Inspect:   Inspect,
		Open:      Open,
		Create:    Create,
		BlockSize: BlockSize,
		Check:     Check,
		Options:   CreateOptions,
		Validate: func(opt disk.CreateOptions) error {
			_, _, err := createGeometry(opt)
			return err
		},
		Size:       createSize,
		Extensions: []string{".qed"},
	})
}

// CreateOptions are the -o options Create takes, as qemu-img spells them.
// A backing file is never written, and preallocation is not offered.
var CreateOptions = []disk.Option{
	{Name: "cluster_size", Help: "the cluster size: a power of two from 4K to 64M", Default: "64K"},
	{Name: "table_size", Help: "clusters per L1 or L2 table: 2, 4, 8 or 16", Values: []string{"2", "4", "8", "16"}, Default: "4"},
}
