package vmdk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
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

// FuzzOpen opens arbitrary bytes as a VMDK and, when that succeeds, walks
// the extents of the start and the end of the disk, reads a bounded part
// of them and checks the image. Nothing may panic, hang or allocate
// without bound; every error belongs to one of disk's classes; a read
// never returns more than it was asked for.
func FuzzOpen(f *testing.F) {
	for _, b := range vmdkSeeds() {
		if len(b) <= 1<<20 {
			f.Add(b)
		}
	}
	for _, b := range writerSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		size := int64(len(data))
		if _, err := Inspect(r, size, disk.Limits{}); err != nil && !classified(err) {
			t.Fatalf("Inspect: error of no class: %v", err)
		}
		im, err := Open(r, size, disk.OpenOptions{})
		if err != nil {
			if !classified(err) {
				t.Fatalf("Open: error of no class: %v", err)
			}
			return
		}
		defer im.Close()
		_ = im.(disk.Describer).Info()
		if _, err := Check(r, size); err != nil && !classified(err) {
			t.Fatalf("Check: error of no class: %v", err)
		}
		const window = 1 << 20
		buf := make([]byte, 64<<10)
		for _, w := range []int64{0, max(0, im.Size()-window)} {
			n := min(window, im.Size()-w)
			exts, err := im.Extents(w, n)
			if err != nil {
				if !classified(err) {
					t.Fatalf("Extents: error of no class: %v", err)
				}
				continue
			}
			pos := w
			for _, e := range exts {
				if e.Offset != pos || e.Length <= 0 {
					t.Fatalf("Extents(%d, %d): %+v does not continue at %d", w, n, e, pos)
				}
				pos = e.End()
				if e.Zero {
					continue
				}
				k := min(int64(len(buf)), e.Length)
				if _, err := im.ReadAt(buf[:k], e.Offset); err != nil && !classified(err) {
					t.Fatalf("ReadAt: error of no class: %v", err)
				}
			}
			if pos != w+n {
				t.Fatalf("Extents(%d, %d) end at %d", w, n, pos)
			}
		}
	})
}

// writerSeeds are small images of our writer, in both subformats.
func writerSeeds(t testing.TB) [][]byte {
	var out [][]byte
	dir := t.TempDir()
	data := pattern(200_000, 3)
	for i, opt := range []disk.CreateOptions{{}, {Compress: true}} {
		p := filepath.Join(dir, "seed"+itoa(int64(i))+".vmdk")
		makeVMDK(t, p, data, int64(len(data)), opt, false)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}
