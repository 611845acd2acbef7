package vmdk

import "github.com/ucphhpc/gen-vm-image-go/disk"

func init() {
	disk.Register(disk.Format{
		Name:       "vmdk",
		Sniff:      Sniff,
		Inspect:    Inspect,
		Open:       Open,
		Extensions: []string{".vmdk"},
	})
}
