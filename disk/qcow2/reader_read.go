package qcow2

import (
	"fmt"
	"io"

	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
	"github.com/ucphhpc/gen-vm-image-go/internal/inflate"
)

// rdMaxBatch is the most compressed clusters fetched with one pread.
const rdMaxBatch = 64

// rdMaxGap is the largest hole between the compressed data of two clusters
// that one pread still spans (qemu packs compressed clusters back to back).
const rdMaxGap = 4096

// ReadAt reads the virtual disk. It is safe for concurrent use: each call
// walks the tables with its own cursor, reads host bytes with pread, and
// decompresses with pooled decompressors.
//
// Runs of clusters that are contiguous at host are read with one pread;
// runs of compressed clusters whose data lies close together at host too.
func (im *rdImage) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("qcow2: read at negative offset %d", off)
	}
	if off >= im.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := int64(len(p))
	if n > im.size-off {
		n = im.size - off
	}
	end := off + n
	c := im.cursor()
	var batch [rdMaxBatch]rdRun
	var pending rdRun // a run read ahead while batching compressed clusters
	havePending := false
	for pos := off; pos < end; {
		var r rdRun
		if havePending {
			r, havePending = pending, false
		} else {
			var err error
			if r, err = c.run(pos, end); err != nil {
				return int(pos - off), err
			}
		}
		switch r.kind {
		case rdZero:
			clear(p[pos-off : pos-off+r.n])
		case rdData:
			if err := im.readHost(p[pos-off:pos-off+r.n], r.host); err != nil {
				return int(pos - off), err
			}
		case rdCompressed:
			// Gather the compressed clusters that follow, as long as their
			// data lies ascending and close together at host.
			runs := append(batch[:0], r)
			lo, hi := r.host, r.host+r.clen
			next := pos + r.n
			for next < end && len(runs) < rdMaxBatch {
				r2, err := c.run(next, end)
				if err != nil {
					break // reported when the loop gets there
				}
				last := runs[len(runs)-1]
				if r2.kind != rdCompressed || r2.host < last.host || r2.host > hi+rdMaxGap ||
					max(hi, r2.host+r2.clen)-lo > im.hostBufSize {
					pending, havePending = r2, true
					break
				}
				runs = append(runs, r2)
				hi = max(hi, r2.host+r2.clen)
				next += r2.n
			}
			if err := im.readCompressed(p[pos-off:next-off], pos, runs, lo, hi); err != nil {
				return int(pos - off), err
			}
			r.n = next - pos
		}
		pos += r.n
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

// readHost reads len(p) bytes of a data run at host offset off. Bytes past
// the end of the file read as zeros, as qemu reads them: the last data
// cluster of an image is often written only up to the virtual size.
func (im *rdImage) readHost(p []byte, off int64) error {
	if err := blockio.ReadPadded(im.r, im.fileSize, p, off); err != nil {
		return fmt.Errorf("qcow2: reading %d bytes at host offset %#x: %w", len(p), off, err)
	}
	return nil
}

// readCompressed fills dst, the virtual range starting at pos covered by
// the compressed runs, from the host bytes [lo, hi) that hold their data.
func (im *rdImage) readCompressed(dst []byte, pos int64, runs []rdRun, lo, hi int64) error {
	bp := im.bufs.Get().(*[]byte)
	defer im.bufs.Put(bp)
	// The data of the last cluster of a file may run past its end: read
	// what exists.
	hi = min(hi, im.fileSize)
	src := (*bp)[:hi-lo]
	if err := blockio.ReadFull(im.r, src, lo); err != nil {
		return fmt.Errorf("qcow2: reading compressed data at host offset %#x: %w", lo, err)
	}
	var at int64
	for _, r := range runs {
		in := src[r.host-lo : min(r.host+r.clen, hi)-lo]
		clusterStart := pos &^ (im.clusterSize - 1)
		out := dst[at : at+r.n]
		if pos == clusterStart && r.n == im.clusterSize {
			if err := im.decompress(out, in, clusterStart, r.host); err != nil {
				return err
			}
		} else {
			cluster := im.clusters.get(r.host)
			if cluster == nil {
				cluster = make([]byte, im.clusterSize)
				if err := im.decompress(cluster, in, clusterStart, r.host); err != nil {
					return err
				}
				im.clusters.put(r.host, cluster)
			}
			copy(out, cluster[pos-clusterStart:])
		}
		at += r.n
		pos += r.n
	}
	return nil
}

// decompress fills one cluster from its compressed data. Compressed
// clusters (qcow2.txt "Compressed Clusters Descriptor") hold one cluster
// of output; their stored length is rounded up to whole sectors, so in
// may carry trailing bytes (padding, or the start of the next compressed
// cluster): like qemu (block/qcow2-threads.c), decompression stops as
// soon as the cluster is full and ignores the rest.
func (im *rdImage) decompress(cluster, in []byte, virt, host int64) error {
	var err error
	if im.zstd {
		err = inflate.DecodeZstd(cluster, in)
	} else {
		err = inflate.Decode(cluster, in)
	}
	if err != nil {
		return formatErr("compressed cluster for virtual offset %#x at host offset %#x (%d bytes): %w", virt, host, len(in), err)
	}
	return nil
}
