package vhdx

import "github.com/ucphhpc/gen-vm-image-go/disk"

func init() {
	disk.Register(disk.Format{
		Name:      "vhdx",
		Sniff:     Sniff,
		Inspect:   Inspect,
		Open:      Open,
		Create:    Create,
		BlockSize: BlockSize,
		Check:     Check,
		Options:   CreateOptions,
		Validate: func(opt disk.CreateOptions) error {
			_, err := parseOptions(opt)
			return err
		},
		Extensions: []string{".vhdx"},
	})
}
