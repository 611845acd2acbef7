package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"sync"
)

// A one-shot raw deflate decoder (RFC 1951) for compressed clusters.
//
// Why not a streaming inflater: a compressed cluster is inflated whole
// into a buffer that will hold the whole output, the way qemu does it
// (block/qcow2-threads.c: one inflate() call with Z_FINISH). That lets
// back-references copy straight from the output instead of a ring-buffer
// window, and lets the bit reader load 8 input bytes at a time; together
// about twice as fast as a streaming decoder (klauspost/compress/flate),
// which is what makes parallel conversion of zlib images beat qemu-img.
//
// Semantics follow qemu's use of zlib: decoding stops, successfully, as
// soon as dst is full (trailing input is ignored); a stream that ends
// before dst is full is an error; references may reach back to the
// start of the output (one-shot zlib does not enforce the window).
// Code sets are checked as zlib's inflate_table checks them.

const (
	rdLitBits     = 10 // first-level lookup bits for literal/length codes
	rdLitSubBits  = 15 - rdLitBits
	rdDistBits    = 8
	rdDistSubBits = 15 - rdDistBits
	rdPreBits     = 7 // code-length codes are at most 7 bits: one level

	rdMaxLitSymbols  = 286
	rdMaxDistSymbols = 30
)

// A table entry says everything about a code without further lookups:
//
//	bits 0-7   bits to consume: code length plus extra bits
//	bits 8-11  code length (the extra bits follow it)
//	bits 12-15 flags
//	bits 16-31 literal byte, length or distance base, code-length symbol,
//	           or the index of a second-level table
const (
	rdEntryLiteral = 1 << 12
	rdEntryEnd     = 1 << 13 // end of block
	rdEntrySub     = 1 << 14 // pointer to a second-level table
	rdEntryBad     = 1 << 15 // no such code, or a symbol deflate does not define
)

var (
	errRdInflateTruncated = errors.New("deflate data is truncated")
	errRdInflateShort     = errors.New("deflate stream ends before a whole cluster")
	errRdInflateLitCode   = errors.New("invalid literal/length code")
	errRdInflateDistCode  = errors.New("invalid distance code")
	// zlib refuses these; Go's compress/flate does not.
	errRdInflateNoEnd   = errors.New("no end-of-block code")
	errRdInflatePrecode = errors.New("invalid code lengths code")
)

// Base value and extra bits of length codes 257-285 and distance codes
// 0-29 (RFC 1951 3.2.5), and the order of code-length code lengths.
var (
	rdLenBase = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
		35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	rdLenExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
		3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	rdDistBase = [30]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193,
		257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	rdDistExtra = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6,
		7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
	rdPrecodeOrder = [19]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
)

// The kinds of code a table decodes, for the entries it holds.
const (
	rdCodeLit = iota
	rdCodeDist
	rdCodePre
)

// rdSymbolEntry is the entry of symbol sym with code length l.
func rdSymbolEntry(kind, sym int, l uint8) uint32 {
	cl := uint32(l)
	switch kind {
	case rdCodeLit:
		switch {
		case sym < 256:
			return uint32(sym)<<16 | rdEntryLiteral | cl<<8 | cl
		case sym == 256:
			return rdEntryEnd | cl<<8 | cl
		case sym < 286:
			i := sym - 257
			return uint32(rdLenBase[i])<<16 | cl<<8 | (cl + uint32(rdLenExtra[i]))
		}
	case rdCodeDist:
		if sym < 30 {
			return uint32(rdDistBase[sym])<<16 | cl<<8 | (cl + uint32(rdDistExtra[sym]))
		}
	case rdCodePre:
		return uint32(sym)<<16 | cl<<8 | cl
	}
	// Symbols 286-287 and 30-31 have codes in fixed blocks but no meaning.
	return rdEntryBad | cl<<8 | cl
}

// Tables sized for the worst case: every long code in its own
// second-level table.
type rdLitTable [1<<rdLitBits + 288<<rdLitSubBits]uint32
type rdDistTable [1<<rdDistBits + 32<<rdDistSubBits]uint32

type rdFixed struct {
	lit  rdLitTable
	dist rdDistTable
}

// rdFixedTables are the tables of fixed Huffman blocks (RFC 1951 3.2.6).
var rdFixedTables = sync.OnceValue(func() *rdFixed {
	t := new(rdFixed)
	var lens [288]uint8
	for i := range lens {
		switch {
		case i < 144:
			lens[i] = 8
		case i < 256:
			lens[i] = 9
		case i < 280:
			lens[i] = 7
		default:
			lens[i] = 8
		}
	}
	rdBuildTable(t.lit[:], lens[:], rdLitBits, rdCodeLit)
	for i := range 32 {
		lens[i] = 5
	}
	rdBuildTable(t.dist[:], lens[:32], rdDistBits, rdCodeDist)
	return t
})

// rdInflateState holds the tables of dynamic blocks; pooled.
type rdInflateState struct {
	lit  rdLitTable
	dist rdDistTable
	pre  [1 << rdPreBits]uint32
	lens [rdMaxLitSymbols + rdMaxDistSymbols]uint8
}

var rdInflateStates = sync.Pool{New: func() any { return new(rdInflateState) }}

// rdInflate fills dst with the output of the raw deflate stream in src.
func rdInflate(dst, src []byte) error {
	z := rdInflateStates.Get().(*rdInflateState)
	defer rdInflateStates.Put(z)
	if err := z.inflate(dst, src); err != nil {
		return fmt.Errorf("deflate: %w", err)
	}
	return nil
}

// rdBitReader reads bits LSB first. Past the end of the input it supplies
// zero bytes, counting them in pos, so that decoding needs no bounds
// checks on the input; the bits consumed are compared with the input
// length before a result is trusted.
type rdBitReader struct {
	in  []byte
	pos int    // input bytes loaded into buf (may pass len(in))
	buf uint64 // bits [0, n) are the next input bits
	n   uint
}

// rdOverrunLimit is how far past the end of the input the reader may pad
// before decoding stops as truncated.
const rdOverrunLimit = 16

// refill loads whole bytes until at least 56 bits are buffered.
func (b *rdBitReader) refill() {
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

// overrun reports whether more bits were consumed than the input holds.
func (b *rdBitReader) overrun() bool { return b.pos*8-int(b.n) > len(b.in)*8 }

func (b *rdBitReader) bits(n uint) uint32 {
	if b.n < n {
		b.refill()
	}
	v := uint32(b.buf & (1<<n - 1))
	b.buf >>= n
	b.n -= n
	return v
}

func (z *rdInflateState) inflate(dst, src []byte) error {
	br := rdBitReader{in: src}
	op := 0
	if len(dst) == 0 {
		return nil
	}
	for {
		if br.pos-len(br.in) > rdOverrunLimit {
			return errRdInflateTruncated
		}
		header := br.bits(3)
		final := header&1 != 0
		var lit *rdLitTable
		var dist *rdDistTable
		switch header >> 1 {
		case 0: // stored (RFC 1951 3.2.4)
			at := (br.pos*8 - int(br.n) + 7) / 8
			br.buf, br.n, br.pos = 0, 0, at
			if at+4 > len(src) {
				return errRdInflateTruncated
			}
			n := int(binary.LittleEndian.Uint16(src[at:]))
			if binary.LittleEndian.Uint16(src[at+2:]) != ^uint16(n) {
				return errors.New("stored block length check fails")
			}
			at += 4
			op += copy(dst[op:], src[at:min(at+n, len(src))])
			if op == len(dst) {
				return nil
			}
			if at+n > len(src) {
				return errRdInflateTruncated
			}
			br.pos = at + n
		case 1:
			fixed := rdFixedTables()
			lit, dist = &fixed.lit, &fixed.dist
		case 2:
			if err := z.readDynamicTables(&br); err != nil {
				return err
			}
			lit, dist = &z.lit, &z.dist
		default:
			return errors.New("invalid block type 3")
		}
		if lit != nil {
			var done bool
			var err error
			op, done, err = rdInflateBlock(dst, op, &br, lit, dist)
			if err != nil {
				return err
			}
			if done {
				if br.overrun() {
					return errRdInflateTruncated
				}
				return nil
			}
		}
		if final {
			if br.overrun() {
				return errRdInflateTruncated
			}
			return errRdInflateShort
		}
	}
}

// rdInflateBlock decodes the symbols of one Huffman block into dst from
// op on. It returns the new output position, and done when dst is full.
// This is the hot loop: the bit reader lives in locals, and matches are
// copied eight bytes at a time where the output has room to spare.
func rdInflateBlock(dst []byte, op int, br *rdBitReader, lit *rdLitTable, dist *rdDistTable) (_ int, done bool, err error) {
	const litMask, litSubMask = 1<<rdLitBits - 1, 1<<rdLitSubBits - 1
	in, pos, buf, n := br.in, br.pos, br.buf, br.n

	// The fast loop runs while neither the input nor the output can run
	// out during one iteration: 8 bytes of input to load, and room for the
	// longest match plus an 8-byte overcopy. It refills without a test,
	// then decodes up to three literals from those bits (first-level
	// literal codes are at most rdLitBits long) before it refills again.
	// Shift counts are masked with 63: they are below 64 anyway, and the
	// mask spares the code Go adds for larger shifts (11% faster).
	outFast := len(dst) - (258 + 8)
	for op < outFast && pos+8 <= len(in) {
		buf |= binary.LittleEndian.Uint64(in[pos:]) << (n & 63)
		pos += int((63 - n) >> 3)
		n |= 56 // at least 56 bits: enough for 3 literals, or a whole match

		e := lit[buf&litMask]
		if e&rdEntryLiteral != 0 {
			buf >>= e & 63
			n -= uint(e & 0xff)
			dst[op] = byte(e >> 16)
			op++
			e = lit[buf&litMask]
			if e&rdEntryLiteral == 0 {
				continue
			}
			buf >>= e & 63
			n -= uint(e & 0xff)
			dst[op] = byte(e >> 16)
			op++
			e = lit[buf&litMask]
			if e&rdEntryLiteral == 0 {
				continue
			}
			buf >>= e & 63
			n -= uint(e & 0xff)
			dst[op] = byte(e >> 16)
			op++
			continue
		}
		saved := buf
		if e&rdEntrySub != 0 {
			e = lit[e>>16+uint32(buf>>rdLitBits)&litSubMask]
		}
		if e&rdEntryBad != 0 {
			err = errRdInflateLitCode
			break
		}
		buf >>= e & 63
		n -= uint(e & 0xff)
		if e&rdEntryLiteral != 0 { // a long literal code
			dst[op] = byte(e >> 16)
			op++
			continue
		}
		if e&rdEntryEnd != 0 {
			br.pos, br.buf, br.n = pos, buf, n
			return op, false, nil
		}
		length := rdValue(e, saved)

		saved = buf
		e = rdDistEntry(dist, buf)
		if e&rdEntryBad != 0 {
			err = errRdInflateDistCode
			break
		}
		buf >>= e & 63
		n -= uint(e & 0xff)
		distance := rdValue(e, saved)
		if distance > op {
			err = errRdDistance(distance, op)
			break
		}
		// Copy the match (rdCopyMatch, inlined by hand: the hottest call).
		from := op - distance
		end := op + length
		if distance >= 8 {
			for op < end {
				binary.LittleEndian.PutUint64(dst[op:], binary.LittleEndian.Uint64(dst[from:]))
				op += 8
				from += 8
			}
			op = end
			continue
		}
		op = rdCopyMatch(dst, op, distance, length)
	}
	if err != nil {
		br.pos, br.buf, br.n = pos, buf, n
		return op, false, err
	}

	// The careful loop: near the end of the input or the output.
	for {
		// One symbol takes at most 15+5+15+13 = 48 bits.
		if n < 48 {
			if pos+8 <= len(in) {
				buf |= binary.LittleEndian.Uint64(in[pos:]) << n
				pos += int((63 - n) >> 3)
				n |= 56
			} else {
				for n <= 56 {
					if pos < len(in) {
						buf |= uint64(in[pos]) << n
					}
					pos++
					n += 8
				}
				if pos-len(in) > rdOverrunLimit {
					err = errRdInflateTruncated
					break
				}
			}
		}
		saved := buf
		e := rdLitEntry(lit, buf)
		if e&rdEntryBad != 0 {
			err = errRdInflateLitCode
			break
		}
		buf >>= e & 0xff
		n -= uint(e & 0xff)
		if e&rdEntryLiteral != 0 {
			dst[op] = byte(e >> 16)
			op++
			if op == len(dst) {
				done = true
				break
			}
			continue
		}
		if e&rdEntryEnd != 0 {
			break
		}
		length := rdValue(e, saved)

		saved = buf
		e = rdDistEntry(dist, buf)
		if e&rdEntryBad != 0 {
			err = errRdInflateDistCode
			break
		}
		buf >>= e & 0xff
		n -= uint(e & 0xff)
		distance := rdValue(e, saved)
		if distance > op {
			err = errRdDistance(distance, op)
			break
		}
		if op+length+8 <= len(dst) {
			op = rdCopyMatch(dst, op, distance, length)
			continue
		}
		from := op - distance
		end := min(op+length, len(dst))
		for op < end {
			op += copy(dst[op:end], dst[from:op])
		}
		if op == len(dst) {
			done = true
			break
		}
	}
	br.pos, br.buf, br.n = pos, buf, n
	return op, done, err
}

// errRdDistance is the error of a match that reaches before the output.
func errRdDistance(distance, op int) error {
	return fmt.Errorf("distance %d reaches before the start of the output (%d bytes)", distance, op)
}

// rdLitEntry and rdDistEntry look up the code at the start of bits,
// through a second-level table where the first level points to one. A code
// that does not exist gives an entry with rdEntryBad set.
func rdLitEntry(t *rdLitTable, bits uint64) uint32 {
	e := t[bits&(1<<rdLitBits-1)]
	if e&rdEntrySub != 0 {
		e = t[e>>16+uint32(bits>>rdLitBits)&(1<<rdLitSubBits-1)]
	}
	return e
}

func rdDistEntry(t *rdDistTable, bits uint64) uint32 {
	e := t[bits&(1<<rdDistBits-1)]
	if e&rdEntrySub != 0 {
		e = t[e>>16+uint32(bits>>rdDistBits)&(1<<rdDistSubBits-1)]
	}
	return e
}

// rdValue is the length or distance of entry e: its base plus the extra
// bits that follow its code in bits, the input before the code was
// consumed.
func rdValue(e uint32, bits uint64) int {
	cl := e >> 8 & 0xf
	return int(e>>16) + int(bits>>cl&(1<<((e&0xff-cl)&63)-1))
}

// rdCopyMatch copies a match of length bytes from distance back to op and
// returns the new op. dst must have 8 bytes to spare after the match:
// whole words are copied, and up to 7 bytes past it are written and later
// overwritten.
func rdCopyMatch(dst []byte, op, distance, length int) int {
	from := op - distance
	end := op + length
	switch {
	case distance >= 8:
		for op < end {
			binary.LittleEndian.PutUint64(dst[op:], binary.LittleEndian.Uint64(dst[from:]))
			op += 8
			from += 8
		}
	case distance == 1:
		v := uint64(dst[from]) * 0x0101010101010101
		for op < end {
			binary.LittleEndian.PutUint64(dst[op:], v)
			op += 8
		}
	default:
		for op < end {
			op += copy(dst[op:end], dst[from:op])
		}
	}
	return end
}

// readDynamicTables reads the code lengths of a dynamic block (RFC 1951
// 3.2.7) and builds its tables.
func (z *rdInflateState) readDynamicTables(br *rdBitReader) error {
	nlit := int(br.bits(5)) + 257
	ndist := int(br.bits(5)) + 1
	nclen := int(br.bits(4)) + 4
	if nlit > rdMaxLitSymbols || ndist > rdMaxDistSymbols {
		return errors.New("too many length or distance symbols")
	}
	var clens [19]uint8
	for i := range nclen {
		clens[rdPrecodeOrder[i]] = uint8(br.bits(3))
	}
	if !rdBuildTable(z.pre[:], clens[:], rdPreBits, rdCodePre) {
		return errRdInflatePrecode
	}
	lens := z.lens[:nlit+ndist]
	for i := 0; i < len(lens); {
		if br.n < 16 {
			br.refill()
		}
		if br.pos-len(br.in) > rdOverrunLimit {
			return errRdInflateTruncated
		}
		e := z.pre[br.buf&(1<<rdPreBits-1)]
		if e&rdEntryBad != 0 {
			return errors.New("invalid code lengths code")
		}
		br.buf >>= e & 0xff
		br.n -= uint(e & 0xff)
		sym := e >> 16
		if sym < 16 {
			lens[i] = uint8(sym)
			i++
			continue
		}
		var value uint8
		var repeat int
		switch sym {
		case 16:
			if i == 0 {
				return errors.New("repeated code length with no previous length")
			}
			value, repeat = lens[i-1], 3+int(br.bits(2))
		case 17:
			repeat = 3 + int(br.bits(3))
		default:
			repeat = 11 + int(br.bits(7))
		}
		if i+repeat > len(lens) {
			return errors.New("code length repeat overruns the code")
		}
		for range repeat {
			lens[i] = value
			i++
		}
	}
	if lens[256] == 0 {
		return errRdInflateNoEnd
	}
	if !rdBuildTable(z.lit[:], lens[:nlit], rdLitBits, rdCodeLit) {
		return errors.New("invalid literal/length code lengths")
	}
	if !rdBuildTable(z.dist[:], lens[nlit:], rdDistBits, rdCodeDist) {
		return errors.New("invalid distance code lengths")
	}
	return nil
}

// rdBuildTable builds the lookup table of the canonical Huffman code with
// the given code lengths (RFC 1951 3.2.2): a first level indexed by
// tableBits input bits, and second-level tables of 15-tableBits bits for
// longer codes. Like zlib's inflate_table, it refuses over-subscribed
// sets and incomplete ones, except a single one-bit literal/length or
// distance code, and an empty set (whose every lookup is invalid).
func rdBuildTable(table []uint32, lens []uint8, tableBits uint, kind int) bool {
	var count [16]int
	for _, l := range lens {
		count[l]++
	}
	count[0] = 0
	left, maxLen := 1, 0
	for l := 1; l <= 15; l++ {
		left = left<<1 - count[l]
		if left < 0 {
			return false
		}
		if count[l] > 0 {
			maxLen = l
		}
	}
	size := 1 << tableBits
	for i := range size {
		table[i] = rdEntryBad
	}
	if maxLen == 0 {
		return true
	}
	if left > 0 && (kind == rdCodePre || maxLen != 1) {
		return false
	}
	var next [16]uint32
	code := uint32(0)
	for l := 1; l <= 15; l++ {
		code = (code + uint32(count[l-1])) << 1
		next[l] = code
	}
	subBits := 15 - tableBits
	nextSub := size
	for sym, l := range lens {
		if l == 0 {
			continue
		}
		c := next[l]
		next[l]++
		rev := uint32(bits.Reverse16(uint16(c))) >> (16 - uint(l))
		entry := rdSymbolEntry(kind, sym, l)
		if uint(l) <= tableBits {
			for i := rev; i < uint32(size); i += 1 << l {
				table[i] = entry
			}
			continue
		}
		low := rev & uint32(size-1)
		p := table[low]
		if p&rdEntrySub == 0 {
			if nextSub+1<<subBits > len(table) {
				return false // cannot happen: tables are sized for the worst case
			}
			p = uint32(nextSub)<<16 | rdEntrySub
			table[low] = p
			for i := range 1 << subBits {
				table[nextSub+i] = rdEntryBad
			}
			nextSub += 1 << subBits
		}
		sub := table[p>>16 : int(p>>16)+1<<subBits]
		for i := rev >> tableBits; i < 1<<subBits; i += 1 << (uint(l) - tableBits) {
			sub[i] = entry
		}
	}
	return true
}
