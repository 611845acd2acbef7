// Package libyal runs libyal's readers, libvmdk and libvhdi (Debian's
// python3-libvmdk and python3-libvhdi), as a second judge of the VMDK, VHD
// and VHDX images we write: a reader written by other people than qemu's
// and ours. Tests skip without them unless GVI_REQUIRE_LIBYAL=1.
package libyal

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// python is Debian's, which has the modules (another python3 on PATH,
// pyenv's say, does not).
const python = "/usr/bin/python3"

// script reads the whole virtual disk of the image at argv[2] with the
// module argv[1] names and prints its size and SHA-256.
const script = `
import hashlib, sys
kind, path = sys.argv[1], sys.argv[2]
if kind == "vmdk":
    import pyvmdk
    h = pyvmdk.handle()
    h.open(path)
    h.open_extent_data_files()
else:
    import pyvhdi
    h = pyvhdi.file()
    h.open(path)
size = h.get_media_size()
s = hashlib.sha256()
off = 0
while off < size:
    n = min(1 << 20, size - off)
    b = h.read_buffer_at_offset(n, off)
    if len(b) != n:
        sys.exit("short read at %d: %d of %d bytes" % (off, len(b), n))
    s.update(b)
    off += n
print(size, s.hexdigest())
`

// Read returns the virtual size and the SHA-256 of the virtual disk of
// the image at path as libyal reads it; kind is "vmdk" or "vhdi" (VHD and
// VHDX).
func Read(t testing.TB, kind, path string) (int64, string) {
	t.Helper()
	module := map[string]string{"vmdk": "pyvmdk", "vhdi": "pyvhdi"}[kind]
	if module == "" {
		t.Fatalf("libyal: unknown kind %q", kind)
	}
	if err := exec.Command(python, "-c", "import "+module).Run(); err != nil {
		if os.Getenv("GVI_REQUIRE_LIBYAL") == "1" {
			t.Fatalf("libyal: %s cannot import %s (install python3-lib%s): %v", python, module, kind, err)
		}
		t.Skipf("libyal: %s not installed (python3-lib%s); set GVI_REQUIRE_LIBYAL=1 to make this fail", module, kind)
	}
	out, err := exec.Command(python, "-c", script, kind, path).CombinedOutput()
	if err != nil {
		t.Fatalf("libyal %s could not read %s: %v\n%s", kind, path, err, out)
	}
	fields := strings.Fields(string(out))
	if len(fields) != 2 {
		t.Fatalf("libyal: unexpected output %q", out)
	}
	size, err := strconv.ParseInt(fields[0], 10, 64)
	if err != nil {
		t.Fatalf("libyal: unexpected output %q", out)
	}
	return size, fields[1]
}
