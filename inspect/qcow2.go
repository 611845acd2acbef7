package inspect

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/disk/qcow2"
)

// checkQCOW2 reads the header cluster (at most 2 MiB: cluster_bits is
// peeked and bounded first) and refuses, in this order: malformed or
// absurd geometry (qcow2.ParseHeader bounds L1, refcount table, snapshot
// count and backing name), unknown incompatible features, encryption, an
// external data file, a backing file, and sizes beyond the policy.
func checkQCOW2(src *source, p Policy, rep *Report) error {
	head, err := src.read("qcow2 header", 0, min(src.size, 72))
	if err != nil {
		return err
	}
	want := int64(len(head))
	if len(head) >= 72 {
		if cb := binary.BigEndian.Uint32(head[20:]); cb >= qcow2.MinClusterBits && cb <= qcow2.MaxClusterBits {
			want = min(src.size, int64(1)<<cb)
		}
	}
	buf := head
	if want > int64(len(head)) {
		if buf, err = src.read("qcow2 header cluster", 0, want); err != nil {
			return err
		}
	}
	h, err := qcow2.ParseHeader(buf, src.size)
	if err != nil {
		return err
	}
	if unknown := h.IncompatibleFeatures &^ qcow2.IncompatKnown; unknown != 0 {
		var bits []string
		for b := range 64 {
			if unknown&(1<<b) != 0 {
				bits = append(bits, fmt.Sprint(b))
			}
		}
		return refuse(disk.ErrUnsupported, "unknown incompatible feature bits %s (%#x) are set: the image needs a reader that knows them, and guessing could read garbage or follow a reference we do not see",
			strings.Join(bits, ", "), unknown)
	}
	if h.CryptMethod != qcow2.CryptNone || h.HasFDEExtension {
		method := map[uint32]string{qcow2.CryptAES: "AES", qcow2.CryptLUKS: "LUKS"}[h.CryptMethod]
		if method == "" {
			method = fmt.Sprintf("method %d", h.CryptMethod)
		}
		return refuse(disk.ErrUnsupported, "the image is encrypted (%s); encrypted images cannot be read: decrypt it first (qemu-img convert with --object secret,...) and pass the result", method)
	}
	if h.IncompatibleFeatures&qcow2.IncompatDataFile != 0 || h.DataFile != "" {
		name := "(no name recorded: it would be given on the command line)"
		if h.DataFile != "" {
			name = quote(h.DataFile)
		}
		return refuse(disk.ErrUnsafe, "the image keeps its data in the external data file %s: an image must not make us open other files, and no option allows it; convert it on a trusted host (qemu-img convert -O qcow2) first", name)
	}
	if h.BackingFileOffset != 0 {
		name := quote(h.BackingFile)
		if h.BackingFile == "" {
			name = fmt.Sprintf("(an empty name at offset %#x)", h.BackingFileOffset)
		}
		format := ""
		if h.BackingFormat != "" {
			format = fmt.Sprintf(" (format %s)", quote(h.BackingFormat))
		}
		if p.AllowBacking {
			return refuse(disk.ErrUnsupported, "the image is an overlay on the backing file %s%s and backing files are allowed, but this version cannot read through a backing chain; flatten it first (qemu-img convert -O qcow2 overlay flat.qcow2)",
				name, format)
		}
		return refuse(disk.ErrUnsafe, "the image is an overlay on the backing file %s%s: an image must not make us open other files (this version cannot read backing chains, so no option allows it); flatten it first (qemu-img convert -O qcow2 overlay flat.qcow2)",
			name, format)
	}
	if err := checkSize("the qcow2 header", h.Size, p); err != nil {
		return err
	}
	if int(h.NbSnapshots) > p.maxSnapshots() {
		return refuse(ErrLimit, "the header declares %d internal snapshots, more than the limit of %d (snapshots are not converted; delete them with qemu-img snapshot -d)",
			h.NbSnapshots, p.maxSnapshots())
	}
	// The snapshot table's fixed parts alone (40 bytes an entry) must fit in
	// the file; the reader walks the variable parts with the same bound.
	if n := uint64(h.NbSnapshots); n > 0 {
		if h.SnapshotsOffset < uint64(h.ClusterSize()) || h.SnapshotsOffset > uint64(src.size) || n*40 > uint64(src.size)-h.SnapshotsOffset {
			return refuse(disk.ErrFormat, "the snapshot table of %d entries at offset %#x does not fit in the file (%d bytes)",
				n, h.SnapshotsOffset, src.size)
		}
	}
	// The active L1 entries that cover the virtual size must lie inside the
	// file: a reader loads them whole.
	perL1 := uint64(h.L2Entries()) * uint64(h.ClusterSize())
	if need := (h.Size + perL1 - 1) / perL1; need > 0 {
		if h.L1TableOffset > uint64(src.size) || need*8 > uint64(src.size)-h.L1TableOffset {
			return refuse(disk.ErrFormat, "the L1 table (%d entries needed for the virtual size) at offset %#x runs past the end of the file (%d bytes)",
				need, h.L1TableOffset, src.size)
		}
	}
	rep.VirtualSize = int64(h.Size)
	rep.Notes = append(rep.Notes, fmt.Sprintf("qcow2 version %d, %d-byte clusters, %d bytes virtual, no backing file, no external data file, not encrypted",
		h.Version, h.ClusterSize(), h.Size))
	if h.IncompatibleFeatures&qcow2.IncompatDirty != 0 {
		rep.Notes = append(rep.Notes, "the qcow2 dirty bit is set: the image was not closed cleanly; its refcounts may be stale (data is read through the L1/L2 tables, which do not depend on them)")
	}
	if h.IncompatibleFeatures&qcow2.IncompatCorrupt != 0 {
		rep.Notes = append(rep.Notes, "the qcow2 corrupt bit is set: qemu found an inconsistency in this image; converted data may be damaged")
	}
	if h.NbSnapshots > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d internal snapshots are ignored: only the active state is converted", h.NbSnapshots))
	}
	return nil
}
