package vmdk

import (
	"fmt"
	"strconv"

	"github.com/ucphhpc/gen-vm-image-go/disk"
)

// The subformats the writer makes.
const (
	subMonolithicSparse = "monolithicSparse"
	subStreamOptimized  = "streamOptimized"
)

// CreateOptions are the -o options Create takes, as qemu-img spells them.
var CreateOptions = []disk.Option{
	{Name: "subformat", Help: "monolithicSparse (one growable file) or streamOptimized (compressed grains, for VMware ESXi, OVA and vSphere)",
		Values: []string{subMonolithicSparse, subStreamOptimized}, Default: subMonolithicSparse},
	{Name: "adapter_type", Help: "the virtual adapter the descriptor names (and its geometry)",
		Values: []string{"ide", "lsilogic", "buslogic", "legacyESX"}, Default: "ide"},
	{Name: "hwversion", Help: "the VMware virtual hardware version the descriptor names: a number, or undefined (4)", Default: "undefined"},
	{Name: "toolsversion", Help: "the VMware guest tools version the descriptor names: a number", Default: "2147483647"},
	{Name: "compat6", Help: "VMware hardware version 6 (the same as hwversion=6)", Values: []string{"on", "off"}, Default: "off"},
}

// settings are the options Create uses, checked.
type settings struct {
	stream       bool
	adapter      string
	hwVersion    string
	toolsVersion string
}

// parseSettings checks opt as qemu-img's vmdk_co_do_create does, and
// -c: compression is what a streamOptimized extent is, so -c without a
// subformat makes one, and -c with monolithicSparse is refused.
func parseSettings(opt disk.CreateOptions) (settings, error) {
	o := opt.Options
	s := settings{adapter: "ide", hwVersion: "4", toolsVersion: "2147483647"}
	switch sub := o["subformat"]; sub {
	case "", subMonolithicSparse:
		if opt.Compress && sub != "" {
			return s, fmt.Errorf("%w: a monolithicSparse vmdk is not compressed; use subformat=streamOptimized with -c (compress)", disk.ErrOption)
		}
		s.stream = opt.Compress
	case subStreamOptimized:
		s.stream = true
	default:
		return s, fmt.Errorf("%w: subformat=%s: subformat takes %s, %s", disk.ErrOption, sub, subMonolithicSparse, subStreamOptimized)
	}
	if a := o["adapter_type"]; a != "" {
		s.adapter = a
	}
	numeric := func(key, v string) error {
		if n, err := strconv.ParseUint(v, 10, 32); err != nil || n == 0 && key == "hwversion" {
			return fmt.Errorf("%w: %s=%s: %s takes a number", disk.ErrOption, key, v, key)
		}
		return nil
	}
	hw, compat6 := o["hwversion"], o["compat6"] == "on"
	switch {
	case hw != "" && hw != "undefined" && compat6:
		return s, fmt.Errorf("%w: compat6 cannot be enabled with hwversion set", disk.ErrOption)
	case compat6:
		s.hwVersion = "6"
	case hw != "" && hw != "undefined":
		if err := numeric("hwversion", hw); err != nil {
			return s, fmt.Errorf("%w or undefined", err)
		}
		s.hwVersion = hw
	}
	if tv := o["toolsversion"]; tv != "" {
		if err := numeric("toolsversion", tv); err != nil {
			return s, err
		}
		s.toolsVersion = tv
	}
	return s, nil
}

// geometry is the CHS geometry qemu-img writes for a disk of the given
// sectors (block/vmdk.c vmdk_co_do_create): 16 heads for IDE, 255 for
// SCSI, 63 sectors a track, whole cylinders rounded down.
func geometry(adapter string, sectors uint64) (cylinders, heads uint64) {
	heads = 255
	if adapter == "ide" {
		heads = 16
	}
	return sectors / (heads * 63), heads
}
