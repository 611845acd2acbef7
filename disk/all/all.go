// Package all registers every disk format this module knows, for programs
// that import it for its side effect, as image/png registers PNG:
//
//	import _ "github.com/ucphhpc/gen-vm-image-go/disk/all"
//
// Adding a format to the program is one line here.
package all

import (
	_ "github.com/ucphhpc/gen-vm-image-go/disk/luks"
	_ "github.com/ucphhpc/gen-vm-image-go/disk/parallels"
	_ "github.com/ucphhpc/gen-vm-image-go/disk/probe"
	_ "github.com/ucphhpc/gen-vm-image-go/disk/qcow"
	_ "github.com/ucphhpc/gen-vm-image-go/disk/qcow2"
	_ "github.com/ucphhpc/gen-vm-image-go/disk/qed"
	_ "github.com/ucphhpc/gen-vm-image-go/disk/raw"
	_ "github.com/ucphhpc/gen-vm-image-go/disk/vdi"
	_ "github.com/ucphhpc/gen-vm-image-go/disk/vhdx"
	_ "github.com/ucphhpc/gen-vm-image-go/disk/vmdk"
	_ "github.com/ucphhpc/gen-vm-image-go/disk/vpc"
)
