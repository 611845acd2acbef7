package inspect

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/testcorpus"
)

// corpusRefusals is what Inspect must say about the corpus files it refuses;
// every other file must be accepted as the format qemu-img names.
var corpusRefusals = map[string]error{
	"binwalk/qcow.bin":                  disk.ErrFormat, // header only, tables beyond EOF
	"cdi/invalid-qcow-backing-file.img": ErrLimit,       // a VMDK of 128 PiB
	"cdi/invalid-qcow-large-memory.img": ErrLimit,       // the same
	"cdi/invalid-qcow-large-json.img":   ErrLimit,       // 65536 snapshots
	"cdi/invalid-qcow-large-size.img":   ErrLimit,       // qcow v1 of 152 TiB
	"cdi/cirros-snapshot1.qcow2":        disk.ErrUnsafe, // backing file
	"cdi/cirros-snapshot2.qcow2":        disk.ErrUnsafe, // backing file
	"dfvfs/fat-differential.vhd":        disk.ErrUnsafe, // differencing
	"dfvfs/image-differential.vhd":      disk.ErrFormat, // checksum
	"dfvfs/image.vhd":                   disk.ErrFormat, // checksum
	"qemu/afl5.img":                     disk.ErrFormat, // truncated dynamic header
	"qemu/afl9.vmdk":                    ErrLimit,       // absurd capacity
	// Not disks at all, which qemu-img would take as raw:
	"discutils/vhdx-log-replay.zip": ErrNotDisk, // the ZIP the image came in
	"qemu/README":                   ErrNotDisk, // text
	"qemu/parallels-with-bitmap.sh": ErrNotDisk, // the shell script that made an image
}

// corpusUnpackLimit keeps `go test` quick: the two [not kept] files of over
// 250 MiB (neither malformed) take seconds each to unpack, and are inspected
// only when GVI_CORPUS_LARGE=1.
const corpusUnpackLimit = 128 << 20

func TestCorpus(t *testing.T) {
	for _, e := range testcorpus.Manifest(t) {
		t.Run(e.File, func(t *testing.T) {
			limit := int64(corpusUnpackLimit)
			if os.Getenv("GVI_CORPUS_LARGE") == "1" {
				limit = 512 << 20
			}
			path, ok := testcorpus.Path(t, e, limit)
			if !ok {
				t.Skipf("unpacks to %d bytes; the limit is %d", e.Size, limit)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			rep, err := Inspect(f, "", Policy{})
			want, refused := corpusRefusals[e.File]
			if refused {
				if !errors.Is(err, want) {
					t.Fatalf("got %+v, %v; want a refusal wrapping %q", rep, err, want)
				}
				t.Logf("refused: %v", err)
				return
			}
			format := strings.Fields(e.QemuFormat)[0]
			switch {
			case strings.HasPrefix(e.QemuFormat, "("): // a .bz2 or .zip container
				format = "raw"
			case strings.HasPrefix(e.QemuFormat, "raw by probe; vpc"): // a fixed VHD qemu does not probe
				format = "vpc"
			case strings.Contains(e.QemuFormat, "contains a log"): // qemu replays only read-write; we replay in memory
				format = "vhdx"
			}
			if err != nil || rep.Format != format {
				t.Fatalf("got %+v, %v; want it accepted as %s", rep, err, format)
			}
		})
	}
}
