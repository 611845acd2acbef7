package vpc

import "github.com/ucphhpc/gen-vm-image-go/disk"

func init() {
	disk.Register(disk.Format{
		Name:       "vpc",
		Aliases:    []string{"vhd"},
		Sniff:      Sniff,
		Inspect:    Inspect,
		Open:       Open,
		Create:     Create,
		BlockSize:  BlockSize,
		Options:    CreateOptions,
		Size:       Size,
		Check:      Check,
		Extensions: []string{".vhd", ".vpc"},
	})
}
