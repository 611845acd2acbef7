package inspect

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/disk/vpc"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// hostileCase is an image (made by qemu-img, then edited where qemu-img
// cannot make the hostile variant) and the refusal Inspect must give.
type hostileCase struct {
	name     string
	make     func(t *testing.T, dir string) string
	declared string
	policy   Policy
	class    error  // nil: accepted
	msg      string // in the error, or in the accepted format name
}

// qemuCreate runs qemu-img create in dir and returns the image's path. The
// size is 1M, except for overlays (-b), whose size comes from the backing
// file unless -u (unsafe: the backing file is not opened) is given.
func qemuCreate(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	full := append(append([]string{"create", "-q"}, args...), path)
	if !slices.Contains(args, "-b") || slices.Contains(args, "-u") {
		full = append(full, "1M")
	}
	oracle.MustRun(t, full...)
	return path
}

func qemu(args ...string) func(t *testing.T, dir string) string {
	return func(t *testing.T, dir string) string { return qemuCreate(t, dir, "image", args...) }
}

// edit applies fn to a qemu-made image's bytes.
func edit(args []string, fn func(t *testing.T, b []byte) []byte) func(t *testing.T, dir string) string {
	return func(t *testing.T, dir string) string {
		path := qemuCreate(t, dir, "image", args...)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, fn(t, b), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
}

func writeTemp(t *testing.T, dir string, b []byte) string {
	t.Helper()
	path := filepath.Join(dir, "image")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// vhdFix recomputes a VHD checksum (footer: at 64; dynamic header: at 36).
func vhdFix(b []byte, at int) {
	binary.BigEndian.PutUint32(b[at:], vpc.Checksum(b, at))
}

// vhdDifferencing is the disk type of a differencing VHD (footer, "Disk
// Type").
const vhdDifferencing = 4

// VHDX layout values and GUIDs ([MS-VHDX] 2.2 "Header Section", 2.6
// "Metadata Region"), on disk: the first three fields little-endian.
const (
	vhdxHeader1    = 64 << 10
	vhdxHeader2    = 128 << 10
	vhdxHeaderSize = 4 << 10
	vhdxRegion1    = 192 << 10
	vhdxRegionSize = 64 << 10
)

var (
	vhdxRegionMetadata = [16]byte{0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b, 0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e} // 8B7CA206-4790-4B9A-B8FE-575F050F886E
	vhdxFileParameters = [16]byte{0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d, 0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b} // CAA16737-FA36-4D43-B3B6-33F0AA44E76B
	vhdxVirtualSize    = [16]byte{0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd, 0x76, 0x48, 0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8} // 2FA54224-CD1B-4876-B211-5DBED83BF4B8
	vhdxParentLocator  = [16]byte{0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3, 0x4d, 0x45, 0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c} // A8D35F2D-B30B-454D-ABF7-D3D84834AB0C
	vhdxLocatorType    = [16]byte{0xb7, 0xef, 0x4a, 0xb0, 0x9e, 0xd1, 0x81, 0x4a, 0xb7, 0x89, 0x25, 0xb8, 0xe9, 0x44, 0x59, 0x13} // B04AEFB7-D19E-4A81-B789-25B8E9445913
)

// vhdxFix recomputes a CRC-32C stored at at over b.
func vhdxFix(b []byte, at int) {
	binary.LittleEndian.PutUint32(b[at:], 0)
	binary.LittleEndian.PutUint32(b[at:], crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

// vmdkDescriptor returns the embedded descriptor area of a sparse VMDK.
func vmdkDescriptor(b []byte) []byte {
	off := binary.LittleEndian.Uint64(b[28:]) * 512
	n := binary.LittleEndian.Uint64(b[36:]) * 512
	return b[off : off+n]
}

// rewriteDescriptor replaces the embedded descriptor's text.
func rewriteDescriptor(t *testing.T, b []byte, fn func(string) string) []byte {
	area := vmdkDescriptor(b)
	text := string(area[:bytes.IndexByte(area, 0)])
	text = fn(text)
	if len(text) > len(area) {
		t.Fatal("descriptor too long")
	}
	clear(area)
	copy(area, text)
	return b
}

var (
	vmdkSparse = []string{"-f", "vmdk"}
	vmdkStream = []string{"-f", "vmdk", "-o", "subformat=streamOptimized"}
	vhdDyn     = []string{"-f", "vpc"}
	vhdx       = []string{"-f", "vhdx"}
	qcow2Plain = []string{"-f", "qcow2"}
)

func hostileCases() []hostileCase {
	base := func(t *testing.T, dir string) string { return qemuCreate(t, dir, "base.qcow2", "-f", "qcow2") }
	return []hostileCase{
		// Accepted: plain images of every format qemu-img makes.
		{name: "qcow2 plain", make: qemu(qcow2Plain...), msg: "qcow2"},
		{name: "qcow2 declared qcow2", make: qemu(qcow2Plain...), declared: "qcow2", msg: "qcow2"},
		{name: "vmdk monolithicSparse", make: qemu(vmdkSparse...), msg: "vmdk"},
		{name: "vmdk streamOptimized", make: qemu(vmdkStream...), msg: "vmdk"},
		{name: "vmdk streamOptimized with a footer that agrees", make: edit(vmdkStream, func(t *testing.T, b []byte) []byte {
			return vmdkWithFooter(b, 0)
		}), msg: "vmdk"},
		{name: "vhd dynamic", make: qemu(vhdDyn...), msg: "vpc"},
		{name: "vhd fixed", make: qemu("-f", "vpc", "-o", "subformat=fixed"), msg: "vpc"},
		{name: "vhdx", make: qemu(vhdx...), msg: "vhdx"},
		{name: "vdi", make: qemu("-f", "vdi"), msg: "vdi"},
		{name: "parallels", make: qemu("-f", "parallels"), msg: "parallels"},
		{name: "qed", make: qemu("-f", "qed"), msg: "qed"},

		// The declared format against the content.
		{name: "qcow2 declared raw", make: qemu(qcow2Plain...), declared: "raw", class: ErrMismatch, msg: "declared as raw but the content is qcow2"},
		{name: "raw whose first sector is a qcow2 header, declared raw", make: func(t *testing.T, dir string) string {
			q, _ := os.ReadFile(qemuCreate(t, dir, "q.qcow2", "-f", "qcow2"))
			raw := make([]byte, 1<<20)
			copy(raw, q[:512])
			return writeTemp(t, dir, raw)
		}, declared: "raw", class: ErrMismatch, msg: "declared as raw but the content is qcow2"},
		{name: "vmdk declared qcow2", make: qemu(vmdkSparse...), declared: "qcow2", class: ErrMismatch, msg: "content is vmdk"},
		{name: "unknown declared format", make: qemu(qcow2Plain...), declared: "qcow3", class: ErrMismatch, msg: `"qcow3" is not a format we know`},

		// Polyglots.
		{name: "qcow2 with a VHD footer", make: func(t *testing.T, dir string) string {
			q, _ := os.ReadFile(qemuCreate(t, dir, "q.qcow2", "-f", "qcow2"))
			v, _ := os.ReadFile(qemuCreate(t, dir, "v.vhd", "-f", "vpc", "-o", "subformat=fixed"))
			return writeTemp(t, dir, append(q, v[len(v)-512:]...))
		}, class: ErrPolyglot, msg: "qcow2 and vpc"},
		{name: "qcow2 with a VMDK descriptor in its first sector", make: edit(qcow2Plain, func(t *testing.T, b []byte) []byte {
			copy(b[256:], "# Disk DescriptorFile\n")
			return b
		}), class: ErrPolyglot, msg: "qcow2 and vmdk"},

		// qcow2 references, encryption, features, geometry.
		{name: "qcow2 backing file", make: func(t *testing.T, dir string) string {
			base(t, dir)
			return qemuCreate(t, dir, "overlay.qcow2", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2")
		}, class: disk.ErrUnsafe, msg: `overlay on the backing file "base.qcow2"`},
		{name: "qcow2 backing json: pseudo-protocol naming /etc/passwd", make: func(t *testing.T, dir string) string {
			return qemuCreate(t, dir, "json.qcow2", "-f", "qcow2", "-u", "-b", `json:{"file.filename":"/etc/passwd"}`, "-F", "raw")
		}, class: disk.ErrUnsafe, msg: `/etc/passwd`},
		{name: "qcow2 external data file", make: qemu("-f", "qcow2", "-o", "data_file=data.raw"), class: disk.ErrUnsafe, msg: `external data file "data.raw"`},
		{name: "qcow2 LUKS encryption", make: qemu("-f", "qcow2", "--object", "secret,id=s0,data=x", "-o", "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10"),
			class: disk.ErrUnsupported, msg: "encrypted (LUKS)"},
		{name: "qcow2 AES encryption", make: qemu("-f", "qcow2", "--object", "secret,id=s0,data=x", "-o", "encrypt.format=aes,encrypt.key-secret=s0"),
			class: disk.ErrUnsupported, msg: "encrypted (AES)"},
		{name: "qcow2 unknown incompatible bit", make: edit(qcow2Plain, func(t *testing.T, b []byte) []byte {
			b[72+6] |= 1 << 2 // bit 10
			return b
		}), class: disk.ErrUnsupported, msg: "unknown incompatible feature bits 10"},
		{name: "qcow2 100 TiB", make: func(t *testing.T, dir string) string {
			path := filepath.Join(dir, "big.qcow2")
			oracle.MustRun(t, "create", "-q", "-f", "qcow2", path, "100T")
			return path
		}, class: ErrLimit, msg: "virtual size of 109951162777600 bytes (100 TiB)"},
		{name: "qcow2 5000 snapshots", make: edit(qcow2Plain, func(t *testing.T, b []byte) []byte {
			binary.BigEndian.PutUint32(b[60:], 5000)
			binary.BigEndian.PutUint64(b[64:], 0x10000)
			return b
		}), class: ErrLimit, msg: "5000 internal snapshots"},
		{name: "qcow2 L1 table beyond 32 MiB", make: edit(qcow2Plain, func(t *testing.T, b []byte) []byte {
			binary.BigEndian.PutUint32(b[36:], 1<<23)
			return b
		}), class: disk.ErrFormat, msg: "L1 table of 8388608 entries"},

		// VMDK.
		{name: "vmdk descriptor file naming /etc/passwd", make: edit([]string{"-f", "vmdk", "-o", "subformat=monolithicFlat"}, func(t *testing.T, b []byte) []byte {
			return []byte(strings.Replace(string(b), `RW 2048 FLAT "image-flat" 0`,
				"RW 2048 FLAT \"image-flat\" 0\nRW 2048 ZERO\nRW 2048 FLAT \"/etc/passwd\" 0", 1))
		}), class: disk.ErrUnsafe, msg: `descriptor extent 3 (line 10) names "/etc/passwd": an image must not refer to other files`},
		{name: "vmdk monolithicFlat descriptor file", make: qemu("-f", "vmdk", "-o", "subformat=monolithicFlat"),
			class: disk.ErrUnsafe, msg: `descriptor extent 1 (line 8) names "image-flat": an image must not refer to other files`},
		{name: "vmdk twoGbMaxExtentSparse descriptor file", make: qemu("-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse"),
			class: disk.ErrUnsafe, msg: `names "image-s001"`},
		{name: "vmdk delta with parentFileNameHint", make: func(t *testing.T, dir string) string {
			qemuCreate(t, dir, "parent.vmdk", "-f", "vmdk")
			return qemuCreate(t, dir, "child.vmdk", "-f", "vmdk", "-b", "parent.vmdk", "-F", "vmdk")
		}, class: disk.ErrUnsafe, msg: `names the parent disk "parent.vmdk"`},
		{name: "vmdk sparse whose embedded extent is /etc/passwd", make: edit(vmdkSparse, func(t *testing.T, b []byte) []byte {
			return rewriteDescriptor(t, b, func(s string) string { return strings.Replace(s, `"image"`, `"/etc/passwd"`, 1) })
		}), class: disk.ErrUnsafe, msg: `extent 1 (line 8) names "/etc/passwd"`},
		{name: "vmdk sparse with a second extent", make: edit(vmdkSparse, func(t *testing.T, b []byte) []byte {
			return rewriteDescriptor(t, b, func(s string) string {
				return strings.Replace(s, `SPARSE "image"`, "SPARSE \"image\"\nRW 2048 FLAT \"secret.img\" 0", 1)
			})
		}), class: disk.ErrUnsafe, msg: `extent 2 (line 9) names "secret.img"`},
		{name: "vmdk sparse claiming monolithicFlat", make: edit(vmdkSparse, func(t *testing.T, b []byte) []byte {
			return rewriteDescriptor(t, b, func(s string) string { return strings.Replace(s, "monolithicSparse", "monolithicFlat", 1) })
		}), class: disk.ErrUnsafe, msg: `createType "monolithicFlat" keeps the disk in other files`},
		{name: "vmdk descriptor with an unknown line", make: edit(vmdkSparse, func(t *testing.T, b []byte) []byte {
			return rewriteDescriptor(t, b, func(s string) string { return strings.Replace(s, "# Extent description", "include /etc/passwd", 1) })
		}), class: disk.ErrFormat, msg: "descriptor line 7: neither a comment"},
		{name: "vmdk descriptor with createType twice", make: edit(vmdkSparse, func(t *testing.T, b []byte) []byte {
			return rewriteDescriptor(t, b, func(s string) string { return s + "createType=\"vmfs\"\n" })
		}), class: disk.ErrFormat, msg: "createType is given twice"},
		{name: "vmdk footer naming another descriptor", make: edit(vmdkStream, func(t *testing.T, b []byte) []byte {
			return vmdkWithFooter(b, 2)
		}), class: disk.ErrUnsafe, msg: "the footer names another descriptor"},
		{name: "vmdk 512 TiB capacity", make: edit(vmdkSparse, func(t *testing.T, b []byte) []byte {
			binary.LittleEndian.PutUint64(b[12:], 1<<40)
			return b
		}), class: ErrLimit, msg: "1099511627776 sectors (512 TiB)"},
		{name: "vmdk grain directory beyond 32 MiB", make: edit(vmdkSparse, func(t *testing.T, b []byte) []byte {
			binary.LittleEndian.PutUint64(b[12:], 1<<27) // 64 GiB
			binary.LittleEndian.PutUint64(b[20:], 1)     // one-sector grains
			binary.LittleEndian.PutUint32(b[44:], 1)     // one entry per grain table
			return b
		}), class: ErrLimit, msg: "grain directory of 134217728 entries"},

		// VHD.
		{name: "vhd differencing", make: edit(vhdDyn, func(t *testing.T, b []byte) []byte {
			for _, off := range []int{0, len(b) - 512} {
				binary.BigEndian.PutUint32(b[off+60:], vhdDifferencing)
				vhdFix(b[off:off+512], 64)
			}
			dyn := b[512 : 512+1024]
			for i, u := range utf16.Encode([]rune("base.vhd")) {
				binary.BigEndian.PutUint16(dyn[64+2*i:], u)
			}
			vhdFix(dyn, 36)
			return b
		}), class: disk.ErrUnsafe, msg: `differencing disk over the parent "base.vhd"`},
		{name: "vhd with 0x40000001 table entries (qemu iotest 135)", make: edit(vhdDyn, func(t *testing.T, b []byte) []byte {
			dyn := b[512 : 512+1024]
			binary.BigEndian.PutUint32(dyn[28:], 0x40000001)
			vhdFix(dyn, 36)
			return b
		}), class: ErrLimit, msg: "block allocation table of 1073741825 entries"},
		{name: "vhd footers that disagree", make: edit(vhdDyn, func(t *testing.T, b []byte) []byte {
			end := b[len(b)-512:]
			binary.BigEndian.PutUint64(end[48:], 1<<19)
			vhdFix(end, 64)
			return b
		}), class: disk.ErrUnsafe, msg: "disagree"},
		{name: "vhd bad footer checksum", make: edit(vhdDyn, func(t *testing.T, b []byte) []byte {
			b[70] ^= 0xff
			return b
		}), class: disk.ErrFormat, msg: "checksum"},

		// VHDX.
		{name: "vhdx differencing (parent locator)", make: edit(vhdx, func(t *testing.T, b []byte) []byte {
			return vhdxWithParent(t, b, "base.vhdx")
		}), class: disk.ErrUnsafe, msg: `differencing disk over the parent "base.vhdx"`},
		// A pending log is replayed in memory (disk/vhdx); one of a
		// version that does not exist cannot be.
		{name: "vhdx log of an unknown version", make: edit(vhdx, func(t *testing.T, b []byte) []byte {
			for _, off := range []int{vhdxHeader1, vhdxHeader2} {
				h := b[off : off+vhdxHeaderSize]
				copy(h[48:64], "pending-changes!")
				h[64] = 1
				vhdxFix(h, 4)
			}
			return b
		}), class: disk.ErrUnsupported, msg: "log version 1"},
		{name: "vhdx 1 PiB", make: edit(vhdx, func(t *testing.T, b []byte) []byte {
			return vhdxSetSize(t, b, 1<<50)
		}), class: ErrLimit, msg: "1 PiB"},

		// Other formats.
		{name: "luks", make: qemu("-f", "luks", "--object", "secret,id=s0,data=x", "-o", "key-secret=s0,iter-time=10"), class: disk.ErrUnsupported, msg: "LUKS"},
		{name: "qcow version 1 backing file", make: func(t *testing.T, dir string) string {
			base(t, dir)
			return qemuCreate(t, dir, "x.qcow", "-f", "qcow", "-b", "base.qcow2", "-F", "qcow2")
		}, class: disk.ErrUnsafe, msg: `backing file "base.qcow2"`},
		{name: "qed backing file", make: func(t *testing.T, dir string) string {
			base(t, dir)
			return qemuCreate(t, dir, "x.qed", "-f", "qed", "-b", "base.qcow2", "-F", "qcow2")
		}, class: disk.ErrUnsafe, msg: `backing file "base.qcow2"`},
		{name: "vdi differencing", make: edit([]string{"-f", "vdi"}, func(t *testing.T, b []byte) []byte {
			binary.LittleEndian.PutUint32(b[0x4c:], 4)
			return b
		}), class: disk.ErrUnsafe, msg: "differencing image (type 4)"},
	}
}

// VMDK hosted sparse extent values ("Virtual Disk Format 5.0").
const (
	vmdkGDAtEnd      = ^uint64(0) // gdOffset: the grain directory follows the grains
	vmdkMarkerFooter = 3
)

// vmdkWithFooter turns a stream-optimized image into one whose header
// says "grain directory at the end" and appends a footer marker, a footer
// (the original header, its descriptor offset moved by shift sectors) and
// an end-of-stream marker.
func vmdkWithFooter(b []byte, shift uint64) []byte {
	footer := append([]byte(nil), b[:512]...)
	le := binary.LittleEndian
	le.PutUint64(footer[28:], le.Uint64(footer[28:])+shift)
	le.PutUint64(b[56:], vmdkGDAtEnd)
	marker := make([]byte, 512)
	le.PutUint64(marker, 1)
	le.PutUint32(marker[12:], vmdkMarkerFooter)
	b = append(b, marker...)
	b = append(b, footer...)
	return append(b, make([]byte, 512)...)
}

// vhdxMetadataTable locates the metadata region of a qemu-made VHDX.
func vhdxMetadataRegion(t *testing.T, b []byte) (off, length int) {
	rt := b[vhdxRegion1 : vhdxRegion1+vhdxRegionSize]
	for i := range int(binary.LittleEndian.Uint32(rt[8:])) {
		e := rt[16+32*i:]
		if [16]byte(e[:16]) == vhdxRegionMetadata {
			return int(binary.LittleEndian.Uint64(e[16:])), int(binary.LittleEndian.Uint32(e[24:]))
		}
	}
	t.Fatal("no metadata region")
	return 0, 0
}

// vhdxSetSize rewrites the virtual disk size item.
func vhdxSetSize(t *testing.T, b []byte, size uint64) []byte {
	off, _ := vhdxMetadataRegion(t, b)
	meta := b[off:]
	for i := range int(binary.LittleEndian.Uint16(meta[10:])) {
		e := meta[32+32*i:]
		if [16]byte(e[:16]) == vhdxVirtualSize {
			binary.LittleEndian.PutUint64(meta[binary.LittleEndian.Uint32(e[16:]):], size)
			return b
		}
	}
	t.Fatal("no virtual size item")
	return nil
}

// vhdxWithParent adds a parent locator item ([MS-VHDX] 2.6.2.6) naming
// parent and sets the file parameters' HasParent flag, as a differencing
// disk made by Hyper-V has them.
func vhdxWithParent(t *testing.T, b []byte, parent string) []byte {
	off, length := vhdxMetadataRegion(t, b)
	meta := b[off : off+length]
	le := binary.LittleEndian
	n := int(le.Uint16(meta[10:]))
	for i := range n {
		e := meta[32+32*i:]
		if [16]byte(e[:16]) == vhdxFileParameters {
			item := meta[le.Uint32(e[16:]):]
			le.PutUint32(item[4:], le.Uint32(item[4:])|2)
		}
	}
	utf := func(s string) []byte {
		var out []byte
		for _, u := range utf16.Encode([]rune(s)) {
			out = le.AppendUint16(out, u)
		}
		return out
	}
	pairs := [][2][]byte{{utf("parent_linkage"), utf("{00000000-0000-0000-0000-000000000000}")}, {utf("relative_path"), utf(parent)}}
	loc := append([]byte(nil), vhdxLocatorType[:]...)
	loc = le.AppendUint16(loc, 0)
	loc = le.AppendUint16(loc, uint16(len(pairs)))
	data := 20 + 12*len(pairs)
	var strs []byte
	for _, kv := range pairs {
		loc = le.AppendUint32(loc, uint32(data+len(strs)))
		strs = append(strs, kv[0]...)
		loc = le.AppendUint32(loc, uint32(data+len(strs)))
		strs = append(strs, kv[1]...)
		loc = le.AppendUint16(loc, uint16(len(kv[0])))
		loc = le.AppendUint16(loc, uint16(len(kv[1])))
	}
	loc = append(loc, strs...)
	const at = 0x18000
	copy(meta[at:], loc)
	e := meta[32+32*n:]
	copy(e, vhdxParentLocator[:])
	le.PutUint32(e[16:], at)
	le.PutUint32(e[20:], uint32(len(loc)))
	le.PutUint32(e[24:], 4|2) // required, virtual disk
	le.PutUint16(meta[10:], uint16(n+1))
	return b
}

func TestHostileImages(t *testing.T) {
	oracle.QemuImg(t)
	for _, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := tc.make(t, dir)
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			rep, err := Inspect(f, tc.declared, tc.policy)
			runtime.ReadMemStats(&after)
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
				t.Errorf("inspection allocated %d bytes; the bound is 8 MiB", alloc)
			}
			if tc.class == nil {
				if err != nil || rep.Format != tc.msg {
					t.Fatalf("want %s accepted, got %+v, %v", tc.msg, rep, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted (%+v); want a refusal wrapping %v with %q", rep, tc.class, tc.msg)
			}
			if !errors.Is(err, tc.class) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v\nwant an error wrapping %q with %q", err, tc.class, tc.msg)
			}
			if errors.Is(err, ErrPolyglot) && !errors.Is(err, disk.ErrUnsafe) {
				t.Errorf("a polyglot refusal must also be disk.ErrUnsafe")
			}
		})
	}
}

func TestSnapshotAndSizeLimitsArePolicy(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "big.qcow2")
	oracle.MustRun(t, "create", "-q", "-f", "qcow2", path, "100T")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := Inspect(f, "", Policy{MaxVirtualSize: 128 << 40})
	if err != nil || rep.VirtualSize != 100<<40 {
		t.Fatalf("a raised limit: %+v %v", rep, err)
	}
}
