package inflate

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// maxZstdFrame bounds what one zstd frame may declare it decodes to, and
// its window: twice the largest qcow2 cluster (2 MiB), so that a hostile
// frame header cannot make the decoder allocate more.
const maxZstdFrame = 4 << 20

var zstdDecoders = sync.Pool{New: func() any {
	// With a nil reader and concurrency 1 a decoder starts no goroutine,
	// so a pooled decoder dropped by the GC leaks nothing.
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(maxZstdFrame),
		zstd.WithDecoderMaxWindow(maxZstdFrame))
	if err != nil {
		return err
	}
	return d
}}

// DecodeZstd fills dst from the zstd frames (RFC 8878) at the start of
// src. qemu writes one frame per qcow2 cluster; the format allows several
// (block/qcow2-threads.c), and skippable frames among them. Like Decode,
// it stops as soon as dst is full: the rest of a frame that outgrows dst,
// and whatever follows the frame that fills it, are ignored. Frames are
// delimited here, from their headers, so the decoder never sees the
// trailing bytes. Data that ends before dst is full is an error
// (ErrShort). A frame may decode to at most 4 MiB and use a window of at
// most 4 MiB (twice the largest qcow2 cluster): larger ones are refused
// before the decoder allocates for them.
//
// Errors are *Error with Format "zstd" whose offset is the start of the
// frame refused, except for a failure to set up a decoder.
func DecodeZstd(dst, src []byte) error {
	pooled := zstdDecoders.Get()
	dec, ok := pooled.(*zstd.Decoder)
	if !ok {
		return fmt.Errorf("zstd: %v", pooled)
	}
	defer zstdDecoders.Put(dec)
	out := dst[:0]
	at := 0
	for len(out) < len(dst) {
		if at == len(src) {
			return &Error{Format: "zstd", Offset: int64(at),
				Err: fmt.Errorf("%w (%d of %d bytes)", ErrShort, len(out), len(dst))}
		}
		n, skippable, err := zstdFrameLen(src[at:])
		if err != nil {
			return &Error{Format: "zstd", Offset: int64(at), Err: err}
		}
		frame := src[at : at+n]
		if skippable {
			at += n
			continue
		}
		got, err := dec.DecodeAll(frame, out)
		if err != nil {
			return &Error{Format: "zstd", Offset: int64(at), Err: fmt.Errorf("%w: %w", ErrFrame, err)}
		}
		at += n
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

// zstd framing (RFC 8878 3.1).
const (
	zstdMagic         = 0xFD2FB528
	zstdSkippableMask = 0xFFFFFFF0
	zstdSkippableBase = 0x184D2A50
)

// zstdFrameLen returns the length of the frame that starts src, reading
// only the frame header and the block headers (RFC 8878 3.1.1).
func zstdFrameLen(src []byte) (n int, skippable bool, err error) {
	le := binary.LittleEndian
	if len(src) < 4 {
		return 0, false, fmt.Errorf("%w: frame magic", ErrTruncated)
	}
	magic := le.Uint32(src)
	if magic&zstdSkippableMask == zstdSkippableBase { // 3.1.2
		if len(src) < 8 {
			return 0, false, fmt.Errorf("%w: skippable frame header", ErrTruncated)
		}
		size := uint64(le.Uint32(src[4:]))
		if size > uint64(len(src)-8) {
			return 0, false, fmt.Errorf("%w: skippable frame runs past the data", ErrTruncated)
		}
		return 8 + int(size), true, nil
	}
	if magic != zstdMagic {
		return 0, false, fmt.Errorf("%w: bad frame magic %#08x", ErrFrame, magic)
	}
	if len(src) < 5 {
		return 0, false, fmt.Errorf("%w: frame header", ErrTruncated)
	}
	fhd := src[4]
	if fhd&0x08 != 0 {
		return 0, false, fmt.Errorf("%w: reserved frame header bit set", ErrFrame)
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
	for { // blocks (3.1.1.2)
		if pos+3 > len(src) {
			return 0, false, fmt.Errorf("%w: block header", ErrTruncated)
		}
		bh := uint32(src[pos]) | uint32(src[pos+1])<<8 | uint32(src[pos+2])<<16
		pos += 3
		size := int(bh >> 3)
		switch (bh >> 1) & 3 {
		case 0, 2: // raw, compressed
		case 1: // RLE: one byte repeated size times
			size = 1
		default:
			return 0, false, fmt.Errorf("%w: reserved block type", ErrFrame)
		}
		if size > len(src)-pos {
			return 0, false, fmt.Errorf("%w: block", ErrTruncated)
		}
		pos += size
		if bh&1 != 0 {
			break
		}
	}
	if fhd&0x04 != 0 { // content checksum
		pos += 4
		if pos > len(src) {
			return 0, false, fmt.Errorf("%w: frame checksum", ErrTruncated)
		}
	}
	return pos, false, nil
}
