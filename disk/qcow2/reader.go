package qcow2

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"sync"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
)

// Open opens the qcow2 image held in the size bytes of r for reading. r
// must allow concurrent ReadAt calls if the image is read concurrently; the
// caller keeps it open and closes it after the image.
//
// Open refuses, before reading any table, what it cannot read safely:
// encrypted images and unknown incompatible features (disk.ErrUnsupported),
// images with an external data file or a backing file (disk.ErrUnsafe).
// Dirty and corrupt images are read as they are; internal snapshots are
// ignored (the active L1 table is read).
func Open(r io.ReaderAt, size int64, opt disk.OpenOptions) (disk.Image, error) {
	h, err := readHeader(r, size)
	if err != nil {
		return nil, err
	}
	if err := h.refusal(); err != nil {
		return nil, err
	}
	if err := checkSnapshotTable(r, size, h); err != nil {
		return nil, err
	}
	im := &rdImage{
		r:           r,
		fileSize:    size,
		hdr:         h,
		size:        int64(h.Size),
		clusterBits: uint(h.ClusterBits),
		clusterSize: h.ClusterSize(),
		l2Entries:   h.L2Entries(),
		extendedL2:  h.ExtendedL2(),
		zstd:        h.CompressionType == CompressionZstd,
		compressed:  newCompressedDescriptor(h.ClusterBits),
	}
	im.l2Bits = uint(bits.TrailingZeros64(uint64(im.l2Entries)))
	if im.extendedL2 {
		im.subclusterBits = im.clusterBits - 5 // 32 subclusters per cluster
	} else {
		im.subclusterBits = im.clusterBits
	}
	if err := im.loadL1(); err != nil {
		return nil, err
	}
	im.l2 = blockio.NewTableCache(rdL2CacheBytes / im.clusterSize)
	// One host read buffer: a compressed cluster takes at most two clusters
	// of host bytes; several of them are fetched with one pread.
	im.hostBufSize = max(2*im.clusterSize, rdCompressedSpan)
	im.bufs.New = func() any { b := make([]byte, im.hostBufSize); return &b }
	im.clusters = newRdClusterCache(im.clusterSize)
	return im, nil
}

// headerInfo is what the header says, in the vocabulary of qemu-img info.
func headerInfo(h *Header) disk.Info {
	return disk.Info{
		Format:        "qcow2",
		VirtualSize:   int64(h.Size),
		ClusterSize:   h.ClusterSize(),
		BackingFile:   h.BackingFile,
		BackingFormat: h.BackingFormat,
		Encrypted:     h.CryptMethod != CryptNone,
		Dirty:         h.IncompatibleFeatures&IncompatDirty != 0,
		Snapshots:     int(h.NbSnapshots),
		Specific:      &disk.Specific{Type: "qcow2", Fields: specificFields(h)},
	}
}

// specificFields are what qemu-img info shows under "Format specific
// information", in its order (block/qcow2.c qcow2_get_specific_info, as
// qemu-img 7.2 prints it): version 2 images have no feature bits to show.
// The details of a LUKS header and of bitmaps are not shown.
func specificFields(h *Header) []disk.Field {
	v3 := h.Version >= 3
	fields := []disk.Field{
		{Key: "compat", Label: "compat", Value: h.Compat()},
		{Key: "compression-type", Label: "compression type", Value: h.CompressionName()},
	}
	if v3 {
		fields = append(fields, disk.Field{Key: "lazy-refcounts", Label: "lazy refcounts", Value: h.CompatibleFeatures&CompatLazyRefcounts != 0})
	}
	fields = append(fields, disk.Field{Key: "refcount-bits", Label: "refcount bits", Value: 1 << h.RefcountOrder})
	if h.DataFile != "" {
		fields = append(fields, disk.Field{Key: "data-file", Label: "data file", Value: h.DataFile})
	}
	if method := map[uint32]string{CryptAES: "aes", CryptLUKS: "luks"}[h.CryptMethod]; method != "" {
		fields = append(fields, disk.Field{Key: "encrypt", Label: "encrypt", Value: []disk.Field{{Key: "format", Label: "format", Value: method}}})
	}
	if h.IncompatibleFeatures&IncompatDataFile != 0 {
		fields = append(fields, disk.Field{Key: "data-file-raw", Label: "data file raw", Value: h.AutoclearFeatures&AutoclearRawDataFile != 0})
	}
	if v3 {
		fields = append(fields,
			disk.Field{Key: "corrupt", Label: "corrupt", Value: h.IncompatibleFeatures&IncompatCorrupt != 0},
			disk.Field{Key: "extended-l2", Label: "extended l2", Value: h.ExtendedL2()})
	}
	return fields
}

// readHeader reads the header cluster and parses it.
func readHeader(r io.ReaderAt, size int64) (*Header, error) {
	buf, err := readHeaderCluster(r, size)
	if err != nil {
		return nil, err
	}
	return ParseHeader(buf, size)
}

// readHeaderCluster reads the first cluster, or the whole file when it is
// shorter: the header, its extensions and the backing file name live there
// (qcow2.txt "Header"). cluster_bits is peeked and bounded first, so that a
// hostile one cannot make us read more than 2 MiB.
func readHeaderCluster(r io.ReaderAt, size int64) ([]byte, error) {
	if size < 0 {
		return nil, formatErr("negative file size %d", size)
	}
	src := blockio.Source{R: r, Size: size}
	head, err := src.Read("the header", 0, min(size, headerV2Length))
	if err != nil {
		return nil, fmt.Errorf("qcow2: %w", err)
	}
	want := int64(len(head))
	if len(head) >= headerV2Length {
		cb := binary.BigEndian.Uint32(head[20:])
		if cb >= MinClusterBits && cb <= MaxClusterBits {
			want = min(size, int64(1)<<cb)
		}
	}
	if want <= int64(len(head)) {
		return head, nil
	}
	buf, err := src.Read("the header cluster", 0, want)
	if err != nil {
		return nil, fmt.Errorf("qcow2: %w", err)
	}
	return buf, nil
}

// rdL2CacheBytes bounds the memory the L2 cache holds per image: 32 MiB of
// L2 tables map 256 GiB of virtual disk with 64 KiB clusters.
const rdL2CacheBytes = 32 << 20

// rdCompressedSpan is the most host bytes one pread fetches for a run of
// compressed clusters.
const rdCompressedSpan = 1 << 20

// rdImage is an open qcow2 image. Everything in it is immutable after
// Open except the L2 cache and the buffer pools, which are safe for
// concurrent use.
type rdImage struct {
	r        io.ReaderAt
	fileSize int64
	hdr      *Header
	size     int64 // virtual size

	clusterBits    uint
	clusterSize    int64
	subclusterBits uint  // log2 of the smallest unit a mapping describes
	l2Entries      int64 // entries per L2 table
	l2Bits         uint  // log2(l2Entries)
	extendedL2     bool
	zstd           bool

	compressed compressedDescriptor

	l1 []uint64 // active L1 table, the entries that cover the virtual size
	l2 *blockio.TableCache

	hostBufSize int64           // max(2 clusters, rdCompressedSpan)
	bufs        sync.Pool       // *[]byte of hostBufSize: host bytes of compressed clusters
	clusters    *rdClusterCache // decompressed clusters, for partial reads
}

// loadL1 reads the L1 entries that cover the virtual size. ParseHeader has
// checked the count against MaxL1Bytes; here we check that they are inside
// the file before allocating them.
func (im *rdImage) loadL1() error {
	if err := im.hdr.checkL1Place(im.fileSize); err != nil {
		return err
	}
	n := im.hdr.activeL1Entries()
	if n == 0 {
		return nil
	}
	off := int64(im.hdr.L1TableOffset)
	buf := make([]byte, n*8)
	if err := blockio.ReadFull(im.r, buf, off); err != nil {
		return fmt.Errorf("qcow2: reading the L1 table at %#x: %w", off, err)
	}
	im.l1 = make([]uint64, n)
	for i := range im.l1 {
		im.l1[i] = binary.BigEndian.Uint64(buf[i*8:])
	}
	return nil
}

// Size returns the virtual size in bytes.
func (im *rdImage) Size() int64 { return im.size }

// Info describes the image as qemu-img info would.
func (im *rdImage) Info() disk.Info { return headerInfo(im.hdr) }

// Close drops the cached tables. It does not close the file.
func (im *rdImage) Close() error {
	im.l2.Clear()
	im.clusters.clear()
	return nil
}
