package vmdk

import "github.com/ucphhpc/gen-vm-image-go/disk"

func init() {
	disk.Register(disk.Format{
		Name:      "vmdk",
		Sniff:     Sniff,
		Inspect:   Inspect,
		Open:      Open,
		Create:    Create,
		BlockSize: BlockSize,
		Options:   CreateOptions,
		Validate: func(opt disk.CreateOptions) error {
			_, err := parseSettings(opt)
			return err
		},
		Compress:   true,
		Check:      Check,
		Extensions: []string{".vmdk"},
	})
}
