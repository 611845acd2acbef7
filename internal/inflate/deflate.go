// Package inflate decodes the compressed data of disk image formats:
// raw DEFLATE (RFC 1951; qcow2 compressed clusters), zlib streams
// (RFC 1950; VMDK grains) and zstd frames (RFC 8878; qcow2 clusters with
// compression type zstd).
//
// Every decoder decodes one whole unit (a cluster, a grain) from a byte
// slice into a buffer that holds all of its output, the way qemu does it.
// The deflate decoder is one-shot for speed: back-references copy straight
// from the output instead of a ring-buffer window, and the bit reader
// loads 8 input bytes at a time; together about twice as fast as a
// streaming decoder (klauspost/compress/flate), which is what makes
// parallel conversion of zlib images beat qemu-img.
//
// Inputs are untrusted: a decoder never reads outside src, never writes
// outside dst, allocates no more than fixed bounds whatever the input
// claims, and refuses what zlib refuses, with an *Error that says where.
package inflate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// decoder holds the tables of dynamic blocks; pooled.
type decoder struct {
	lit  litTable
	dist distTable
	pre  [1 << preBits]uint32
	lens [maxLitSymbols + maxDistSymbols]uint8
}

var decoders = sync.Pool{New: func() any { return new(decoder) }}

// Decode fills dst with the output of the raw deflate stream (RFC 1951)
// at the start of src, with the semantics of qemu's one-shot inflate of a
// compressed qcow2 cluster (block/qcow2-threads.c, inflate() with
// Z_FINISH):
//
//   - decoding stops, successfully, as soon as dst is full: the bytes
//     after that point are not looked at, so src may carry trailing bytes
//     (sector padding, the start of the next cluster) and the stream may
//     go on or be cut off there;
//   - a stream that ends before dst is full is an error (ErrShort);
//   - back-references may reach back to the start of the output: a
//     one-shot inflate does not enforce its window (qemu asks for 4 KiB).
//
// Code sets are checked as zlib's inflate_table checks them, so Decode
// refuses the streams zlib refuses. (zlib still decodes the codes that
// produce no output after the buffer is full, such as an end of block
// and the next block header, and fails the cluster if they are invalid;
// Decode does not look at them. The output is the same either way.)
//
// Errors are *Error with Format "deflate".
func Decode(dst, src []byte) error {
	z := decoders.Get().(*decoder)
	defer decoders.Put(z)
	_, _, err := z.inflate(dst, src, 0, false)
	return err
}

// bitReader reads bits LSB first (RFC 1951 3.1.1). Past the end of the
// input it supplies zero bytes, counting them in pos, so that decoding
// needs no bounds checks on the input; the bits consumed are compared
// with the input length before a result is trusted.
type bitReader struct {
	in  []byte
	pos int    // input bytes loaded into buf (may pass len(in))
	buf uint64 // bits [0, n) are the next input bits
	n   uint

	// What decodeBlock leaves for its caller's errors: n at the start of
	// the last symbol of its careful loop, the distance entry of a match
	// refused for its distance, and whether the match that filled dst was
	// cut there.
	symbolN   uint
	distEntry uint32
	cut       bool
}

// overrunLimit is how far past the end of the input the reader may pad
// before decoding stops as truncated.
const overrunLimit = 16

// refill loads whole bytes until at least 56 bits are buffered.
func (b *bitReader) refill() {
	if b.pos+8 <= len(b.in) {
		// Load 8 bytes; count only the whole bytes that fit. The bits
		// above n are the next bytes' bits and are loaded again, equal,
		// by the next refill.
		b.buf |= binary.LittleEndian.Uint64(b.in[b.pos:]) << b.n
		b.pos += int((63 - b.n) >> 3)
		b.n |= 56
		return
	}
	for b.n <= 56 {
		if b.pos < len(b.in) {
			b.buf |= uint64(b.in[b.pos]) << b.n
		}
		b.pos++
		b.n += 8
	}
}

// consumed is the number of bits consumed: the position of the next bit.
func (b *bitReader) consumed() int { return b.pos*8 - int(b.n) }

// overrun reports whether more bits were consumed than the input holds.
func (b *bitReader) overrun() bool { return b.consumed() > len(b.in)*8 }

func (b *bitReader) bits(n uint) uint32 {
	if b.n < n {
		b.refill()
	}
	v := uint32(b.buf & (1<<n - 1))
	b.buf >>= n
	b.n -= n
	return v
}

// fail is the error of cause for what starts at bit at of the input and
// ends at the reader's position. What was decided on bits read past the
// end of the input (the zero padding) is the input's end: ErrTruncated.
func (b *bitReader) fail(cause error, at int) error {
	if at >= len(b.in)*8 || b.overrun() {
		return b.truncated()
	}
	return &Error{Format: "deflate", Offset: int64(at / 8), Err: cause}
}

func (b *bitReader) truncated() error {
	return &Error{Format: "deflate", Offset: int64(len(b.in)), Err: ErrTruncated}
}

// inflate decodes the deflate stream that starts at byte start of src into
// dst and returns the number of bytes it produced. With whole false it
// stops as soon as dst is full (Decode). With whole true it decodes the
// stream to its end, which must come before any output past dst
// (DecodeZlib), and also returns the offset of the first byte after the
// stream.
func (z *decoder) inflate(dst, src []byte, start int, whole bool) (n, end int, err error) {
	le := binary.LittleEndian
	br := bitReader{in: src, pos: start}
	op := 0
	if len(dst) == 0 && !whole {
		return 0, start, nil
	}
	for {
		if br.overrun() { // the previous block ended past the input
			return op, 0, br.truncated()
		}
		blockStart := br.consumed()
		header := br.bits(3)
		final := header&1 != 0
		var lit *litTable
		var dist *distTable
		switch header >> 1 {
		case 0: // stored (RFC 1951 3.2.4): LEN, NLEN from the next byte
			at := (br.consumed() + 7) / 8
			br.buf, br.n, br.pos = 0, 0, at
			if at+4 > len(src) {
				return op, 0, br.truncated()
			}
			length := int(le.Uint16(src[at:]))
			if le.Uint16(src[at+2:]) != ^uint16(length) {
				return op, 0, br.fail(ErrStoredLength, at*8)
			}
			at += 4
			if whole && length > len(dst)-op {
				return op, 0, br.fail(ErrOverrun, (at+len(dst)-op)*8)
			}
			op += copy(dst[op:], src[at:min(at+length, len(src))])
			if op == len(dst) && !whole {
				return op, 0, nil
			}
			if at+length > len(src) {
				return op, 0, br.truncated()
			}
			br.pos = at + length
		case 1:
			fixed := fixedTables()
			lit, dist = &fixed.lit, &fixed.dist
		case 2:
			if err := z.readDynamicTables(&br); err != nil {
				return op, 0, err
			}
			lit, dist = &z.lit, &z.dist
		default:
			return op, 0, br.fail(ErrBlockType, blockStart)
		}
		if lit != nil {
			full := op == len(dst)
			if !full {
				br.cut = false
				op, full, err = decodeBlock(dst, op, &br, lit, dist)
				switch {
				case err == ErrTruncated:
					return op, 0, br.truncated()
				case errors.Is(err, ErrDistance):
					return op, 0, br.fail(err, br.consumed()-int(br.distEntry&0xff))
				case err != nil:
					return op, 0, br.fail(err, br.consumed())
				case full && br.overrun():
					return op, 0, br.truncated()
				case full && !whole:
					return op, 0, nil
				case full && br.cut:
					// The match that filled dst runs past it.
					return op, 0, br.fail(ErrOverrun, br.pos*8-int(br.symbolN))
				}
			}
			if full {
				if err := br.endOfBlock(lit); err != nil {
					return op, 0, err
				}
			}
		}
		if final {
			if br.overrun() {
				return op, 0, br.truncated()
			}
			end := (br.consumed() + 7) / 8
			if op < len(dst) && !whole {
				return op, 0, &Error{Format: "deflate", Offset: int64(end),
					Err: fmt.Errorf("%w (%d of %d bytes)", ErrShort, op, len(dst))}
			}
			return op, end, nil
		}
	}
}

// endOfBlock reads the code that must follow once dst is full in a
// whole-stream decode: the end of the block. Anything else is output
// that does not fit.
func (b *bitReader) endOfBlock(lit *litTable) error {
	if b.n < 15 {
		b.refill()
	}
	at := b.consumed()
	e := litEntry(lit, b.buf)
	if e&entryBad != 0 {
		return b.fail(ErrLitCode, at)
	}
	if e&entryEnd == 0 {
		return b.fail(ErrOverrun, at)
	}
	b.buf >>= e & 0xff
	b.n -= uint(e & 0xff)
	return nil
}
