package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Compressed clusters (qcow2.txt "Compressed Clusters Descriptor") hold one
// cluster of output. Their stored length is rounded up to whole sectors, so
// the input may carry trailing bytes (padding, or the start of the next
// compressed cluster): like qemu (block/qcow2-threads.c), decompression
// stops as soon as one cluster has been produced and ignores the rest.
//
// Deflate clusters: rdInflate (decompress_inflate.go). zstd clusters:
// rdUnzstd, below, with klauspost/compress/zstd.

// rdZstdMaxFrameOutput bounds what one zstd frame may declare it decodes to
// (twice the largest cluster): a hostile frame header cannot make the
// decoder allocate more.
const rdZstdMaxFrameOutput = 2 << MaxClusterBits

var rdZstdDecoders = sync.Pool{New: func() any {
	// With a nil reader and concurrency 1 a decoder starts no goroutine,
	// so a pooled decoder dropped by the GC leaks nothing.
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(rdZstdMaxFrameOutput),
		zstd.WithDecoderMaxWindow(rdZstdMaxFrameOutput))
	if err != nil {
		return err
	}
	return d
}}

// rdUnzstd fills dst from the zstd frames in src. qemu writes one frame per
// cluster; the format allows several (block/qcow2-threads.c). Frames are
// delimited here, so the decoder never sees the trailing bytes.
func rdUnzstd(dst, src []byte) error {
	pooled := rdZstdDecoders.Get()
	dec, ok := pooled.(*zstd.Decoder)
	if !ok {
		return fmt.Errorf("zstd: %v", pooled)
	}
	defer rdZstdDecoders.Put(dec)
	out := dst[:0]
	for len(out) < len(dst) {
		if len(src) == 0 {
			return fmt.Errorf("zstd data ends after %d of %d bytes of output", len(out), len(dst))
		}
		n, skippable, err := rdZstdFrameLen(src)
		if err != nil {
			return err
		}
		frame := src[:n]
		src = src[n:]
		if skippable {
			continue
		}
		got, err := dec.DecodeAll(frame, out)
		if err != nil {
			return fmt.Errorf("zstd: %w", err)
		}
		if cap(got) > 0 && &got[:1][0] == &dst[:1][0] {
			out = got // decoded in place
			continue
		}
		// The frame outgrew dst and the decoder moved the output: keep the
		// part that fits.
		copy(dst[len(out):], got[len(out):])
		out = dst[:min(len(got), len(dst))]
	}
	return nil
}

// zstd framing (RFC 8878 section 3.1).
const (
	rdZstdMagic         = 0xFD2FB528
	rdZstdSkippableMask = 0xFFFFFFF0
	rdZstdSkippableBase = 0x184D2A50
)

// rdZstdFrameLen returns the length of the frame that starts src, reading
// only the frame header and the block headers.
func rdZstdFrameLen(src []byte) (n int, skippable bool, err error) {
	le := binary.LittleEndian
	if len(src) < 4 {
		return 0, false, errors.New("zstd: truncated frame magic")
	}
	magic := le.Uint32(src)
	if magic&rdZstdSkippableMask == rdZstdSkippableBase {
		if len(src) < 8 {
			return 0, false, errors.New("zstd: truncated skippable frame")
		}
		size := uint64(le.Uint32(src[4:]))
		if size > uint64(len(src)-8) {
			return 0, false, errors.New("zstd: skippable frame runs past the data")
		}
		return 8 + int(size), true, nil
	}
	if magic != rdZstdMagic {
		return 0, false, fmt.Errorf("zstd: bad frame magic %#08x", magic)
	}
	if len(src) < 5 {
		return 0, false, errors.New("zstd: truncated frame header")
	}
	fhd := src[4]
	if fhd&0x08 != 0 {
		return 0, false, errors.New("zstd: reserved frame header bit set")
	}
	singleSegment := fhd&0x20 != 0
	pos := 5
	if !singleSegment {
		pos++ // window descriptor
	}
	pos += [4]int{0, 1, 2, 4}[fhd&3] // dictionary ID
	switch fhd >> 6 {                // frame content size
	case 0:
		if singleSegment {
			pos++
		}
	case 1:
		pos += 2
	case 2:
		pos += 4
	case 3:
		pos += 8
	}
	for {
		if pos+3 > len(src) {
			return 0, false, errors.New("zstd: frame is truncated")
		}
		bh := uint32(src[pos]) | uint32(src[pos+1])<<8 | uint32(src[pos+2])<<16
		pos += 3
		size := int(bh >> 3)
		switch (bh >> 1) & 3 {
		case 0, 2: // raw, compressed
		case 1: // RLE: one byte repeated size times
			size = 1
		default:
			return 0, false, errors.New("zstd: reserved block type")
		}
		if size > len(src)-pos {
			return 0, false, errors.New("zstd: frame is truncated")
		}
		pos += size
		if bh&1 != 0 {
			break
		}
	}
	if fhd&0x04 != 0 { // content checksum
		pos += 4
		if pos > len(src) {
			return 0, false, errors.New("zstd: frame checksum is truncated")
		}
	}
	return pos, false, nil
}
