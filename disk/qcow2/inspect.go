package qcow2

import (
	"fmt"
	"io"
	"strings"

	"github.com/ucphhpc/gen-vm-image-go/disk"
)

// Inspect reads the header cluster (at most 2 MiB: cluster_bits is peeked
// and bounded first) and refuses, in this order: malformed or absurd
// geometry (ParseHeader bounds the L1 and refcount tables, the snapshot
// count and the backing file name), what Open refuses (Header.refusal),
// sizes beyond the limits, and tables that cannot lie inside the file. It
// reads nothing but the header cluster.
func Inspect(r io.ReaderAt, size int64, limits disk.Limits) (disk.Facts, error) {
	h, err := readHeader(r, size)
	if err != nil {
		return disk.Facts{}, err
	}
	facts := disk.Facts{Info: headerInfo(h)}
	if err := h.refusal(); err != nil {
		return facts, err
	}
	limits = limits.WithDefaults()
	if err := limits.CheckVirtualSize("the qcow2 header", h.Size); err != nil {
		return facts, fmt.Errorf("qcow2: %w", err)
	}
	if int(h.NbSnapshots) > limits.MaxSnapshots {
		return facts, fmt.Errorf("qcow2: %w: the header declares %d internal snapshots, more than the limit of %d (snapshots are not converted; delete them with qemu-img snapshot -d)",
			disk.ErrLimit, h.NbSnapshots, limits.MaxSnapshots)
	}
	if err := h.checkSnapshotTablePlace(size); err != nil {
		return facts, err
	}
	if err := h.checkL1Place(size); err != nil {
		return facts, err
	}
	facts.Notes = append(facts.Notes, fmt.Sprintf("qcow2 version %d, %d-byte clusters, %d bytes virtual, no backing file, no external data file, not encrypted",
		h.Version, h.ClusterSize(), h.Size))
	if h.IncompatibleFeatures&IncompatDirty != 0 {
		facts.Notes = append(facts.Notes, "the qcow2 dirty bit is set: the image was not closed cleanly; its refcounts may be stale (data is read through the L1/L2 tables, which do not depend on them)")
	}
	if h.IncompatibleFeatures&IncompatCorrupt != 0 {
		facts.Notes = append(facts.Notes, "the qcow2 corrupt bit is set: qemu found an inconsistency in this image; converted data may be damaged")
	}
	if h.NbSnapshots > 0 {
		facts.Notes = append(facts.Notes, fmt.Sprintf("%d internal snapshots are ignored: only the active state is converted", h.NbSnapshots))
	}
	return facts, nil
}

// refusal says why the image must not be read, or nil, for Open and
// Inspect alike: unknown incompatible features and encryption
// (disk.ErrUnsupported), an external data file and a backing file
// (disk.ErrUnsafe: an image must not make us open other files).
func (h *Header) refusal() error {
	if unknown := h.IncompatibleFeatures &^ IncompatKnown; unknown != 0 {
		var bits []string
		for b := range 64 {
			if unknown&(1<<b) != 0 {
				bits = append(bits, fmt.Sprint(b))
			}
		}
		return unsupportedErr("unknown incompatible feature bits %s (%#x) are set: the image needs a reader that knows them, and guessing could read garbage or follow a reference we do not see",
			strings.Join(bits, ", "), unknown)
	}
	if h.CryptMethod != CryptNone || h.HasFDEExtension {
		method := map[uint32]string{CryptAES: "AES", CryptLUKS: "LUKS"}[h.CryptMethod]
		if method == "" {
			method = fmt.Sprintf("method %d", h.CryptMethod)
		}
		return unsupportedErr("the image is encrypted (%s); encrypted images cannot be read: decrypt it first (qemu-img convert with --object secret,...) and pass the result", method)
	}
	if h.IncompatibleFeatures&IncompatDataFile != 0 || h.DataFile != "" {
		name := "(no name recorded: it would be given on the command line)"
		if h.DataFile != "" {
			name = disk.Quote(h.DataFile)
		}
		return unsafeErr("the image keeps its data in the external data file %s: an image must not make us open other files, and no option allows it; convert it on a trusted host (qemu-img convert -O qcow2) first", name)
	}
	if h.BackingFileOffset != 0 {
		name := disk.Quote(h.BackingFile)
		if h.BackingFile == "" {
			name = fmt.Sprintf("(an empty name at offset %#x)", h.BackingFileOffset)
		}
		format := ""
		if h.BackingFormat != "" {
			format = fmt.Sprintf(" (format %s)", disk.Quote(h.BackingFormat))
		}
		return unsafeErr("the image is an overlay on the backing file %s%s: an image must not make us open other files (this version cannot read backing chains, so no option allows it); flatten it first (qemu-img convert -O qcow2 overlay flat.qcow2)",
			name, format)
	}
	return nil
}

// activeL1Entries is the number of L1 entries that cover the virtual size.
func (h *Header) activeL1Entries() int64 {
	perL1 := h.L2Entries() * h.ClusterSize() // virtual bytes one L1 entry maps
	return int64((h.Size + uint64(perL1) - 1) / uint64(perL1))
}

// checkL1Place refuses an active L1 table that runs past the end of the
// file: a reader loads it whole.
func (h *Header) checkL1Place(fileSize int64) error {
	n := h.activeL1Entries()
	if n == 0 {
		return nil
	}
	if off := h.L1TableOffset; off > uint64(fileSize) || uint64(n)*8 > uint64(fileSize)-off {
		return formatErr("the L1 table (%d entries needed for the virtual size) at host offset %#x runs past the end of the file (%d bytes)",
			n, off, fileSize)
	}
	return nil
}
