package vmdk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
	"github.com/ucphhpc/gen-vm-image-go/internal/testcorpus"
)

// descriptorSeeds are hand-made descriptors: safe ones and each kind of
// hostile one.
var descriptorSeeds = []string{
	"# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicSparse\"\n\n# Extent description\nRW 2048 SPARSE \"disk.vmdk\"\n\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\nddb.adapterType = \"ide\"\n",
	"# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 2048 FLAT \"disk-flat.vmdk\" 0\nRW 2048 ZERO\nRW 2048 FLAT \"/etc/passwd\" 0\n",
	"# Disk DescriptorFile\r\nversion=1\r\nCID=12345678\r\nparentCID=abcdef01\r\ncreateType=\"vmfsSparse\"\r\nparentFileNameHint=\"../base.vmdk\"\r\nRW 2048 VMFSSPARSE \"delta.vmdk\"\r\n",
	"# Disk DescriptorFile\nversion=3\nencoding=\"UTF-8\"\ncreateType=\"streamOptimized\"\nRDONLY 8388608 SPARSE \"d\u00e9j\u00e0 vu.vmdk\"\nddb.comment = \"x = y\"\n",
}

// vmdkSeeds are the VMDK files of ../shared/corpus (when present; the
// invalid-qcow files of cdi are VMDKs too) and those qemu-img makes (when
// it is installed).
func vmdkSeeds() map[string][]byte {
	seeds := oracle.MakeImages([]oracle.ImageSpec{
		{Name: "sparse.vmdk", Args: []string{"-f", "vmdk"}},
		{Name: "stream.vmdk", Args: []string{"-f", "vmdk", "-o", "subformat=streamOptimized"}},
		{Name: "flat.vmdk", Args: []string{"-f", "vmdk", "-o", "subformat=monolithicFlat"}},
		{Name: "child.vmdk", Args: []string{"-f", "vmdk", "-b", "sparse.vmdk", "-F", "vmdk"}},
	})
	if seeds == nil {
		seeds = map[string][]byte{}
	}
	if dir, ok := testcorpus.Lookup(); ok {
		for name, b := range testcorpus.Files(dir, func(name string) bool {
			return strings.HasSuffix(name, ".vmdk") || strings.Contains(name, "invalid-qcow")
		}) {
			seeds["corpus/"+name] = b
		}
	}
	return seeds
}

// classified reports whether err belongs to one of disk's classes.
func classified(err error) bool {
	for _, class := range []error{disk.ErrFormat, disk.ErrUnsupported, disk.ErrUnsafe, disk.ErrLimit} {
		if errors.Is(err, class) {
			return true
		}
	}
	return false
}

// FuzzVMDKDescriptor parses arbitrary text as a descriptor and applies the
// policy to it as embedded and as a descriptor file: errors are classified,
// and what is accepted is a monolithic disk that names only itself.
func FuzzVMDKDescriptor(f *testing.F) {
	for _, d := range descriptorSeeds {
		f.Add([]byte(d))
	}
	for _, b := range vmdkSeeds() {
		if bytes.HasPrefix(b, []byte("KDMV")) && len(b) >= 512 {
			// The embedded descriptor, without its NUL padding.
			off := binary.LittleEndian.Uint64(b[28:]) * 512
			n := binary.LittleEndian.Uint64(b[36:]) * 512
			if off < uint64(len(b)) && n <= uint64(len(b))-off {
				area := b[off : off+n]
				if i := bytes.IndexByte(area, 0); i >= 0 {
					area = area[:i]
				}
				f.Add(bytes.Clone(area))
			}
		} else if len(b) < 64<<10 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		d, err := parseDescriptor(text, disk.Limits{})
		if err != nil {
			if !classified(err) {
				t.Fatalf("error of no class: %v", err)
			}
			return
		}
		for _, embedded := range []bool{true, false} {
			err := checkDescriptor(d, embedded, disk.Limits{})
			if err != nil {
				if !classified(err) {
					t.Fatalf("error of no class: %v", err)
				}
				continue
			}
			if !embedded {
				t.Fatalf("a descriptor file was accepted: %+v", d)
			}
			if len(d.extents) != 1 || d.extents[0].kind != "SPARSE" || strings.ContainsAny(d.extents[0].file, "/\\") {
				t.Fatalf("accepted extents %+v", d.extents)
			}
			if _, ok := d.keys["parentfilenamehint"]; ok {
				t.Fatal("accepted a parent")
			}
		}
	})
}
