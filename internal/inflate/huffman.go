package inflate

import (
	"math/bits"
	"sync"
)

const (
	litBits     = 10 // first-level lookup bits for literal/length codes
	litSubBits  = 15 - litBits
	distBits    = 8
	distSubBits = 15 - distBits
	preBits     = 7 // code-length codes are at most 7 bits: one level

	maxLitSymbols  = 286
	maxDistSymbols = 30
)

// A table entry says everything about a code without further lookups:
//
//	bits 0-7   bits to consume: code length plus extra bits
//	bits 8-11  code length (the extra bits follow it)
//	bits 12-15 flags
//	bits 16-31 literal byte, length or distance base, code-length symbol,
//	           or the index of a second-level table
const (
	entryLiteral = 1 << 12
	entryEnd     = 1 << 13 // end of block
	entrySub     = 1 << 14 // pointer to a second-level table
	entryBad     = 1 << 15 // no such code, or a symbol deflate does not define
)

// Base value and extra bits of length codes 257-285 and distance codes
// 0-29 (RFC 1951 3.2.5), and the order of code-length code lengths
// (3.2.7).
var (
	lenBase = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
		35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lenExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
		3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase = [30]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193,
		257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6,
		7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
	precodeOrder = [19]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
)

// The kinds of code a table decodes, for the entries it holds.
const (
	codeLit = iota
	codeDist
	codePre
)

// symbolEntry is the entry of symbol sym with code length l.
func symbolEntry(kind, sym int, l uint8) uint32 {
	cl := uint32(l)
	switch kind {
	case codeLit:
		switch {
		case sym < 256:
			return uint32(sym)<<16 | entryLiteral | cl<<8 | cl
		case sym == 256:
			return entryEnd | cl<<8 | cl
		case sym < 286:
			i := sym - 257
			return uint32(lenBase[i])<<16 | cl<<8 | (cl + uint32(lenExtra[i]))
		}
	case codeDist:
		if sym < 30 {
			return uint32(distBase[sym])<<16 | cl<<8 | (cl + uint32(distExtra[sym]))
		}
	case codePre:
		return uint32(sym)<<16 | cl<<8 | cl
	}
	// Symbols 286-287 and 30-31 have codes in fixed blocks but no meaning.
	return entryBad | cl<<8 | cl
}

// Tables sized for the worst case: every long code in its own
// second-level table.
type litTable [1<<litBits + 288<<litSubBits]uint32
type distTable [1<<distBits + 32<<distSubBits]uint32

type fixed struct {
	lit  litTable
	dist distTable
}

// fixedTables are the tables of fixed Huffman blocks (RFC 1951 3.2.6).
var fixedTables = sync.OnceValue(func() *fixed {
	t := new(fixed)
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
	buildTable(t.lit[:], lens[:], litBits, codeLit)
	for i := range 32 {
		lens[i] = 5
	}
	buildTable(t.dist[:], lens[:32], distBits, codeDist)
	return t
})

// readDynamicTables reads the code lengths of a dynamic block (RFC 1951
// 3.2.7) and builds its tables.
func (z *decoder) readDynamicTables(br *bitReader) error {
	at := br.consumed()
	nlit := int(br.bits(5)) + 257
	ndist := int(br.bits(5)) + 1
	nclen := int(br.bits(4)) + 4
	if nlit > maxLitSymbols || ndist > maxDistSymbols {
		return br.fail(errCodeCount, at)
	}
	at = br.consumed()
	var clens [19]uint8
	for i := range nclen {
		clens[precodeOrder[i]] = uint8(br.bits(3))
	}
	if br.overrun() {
		return br.truncated()
	}
	if !buildTable(z.pre[:], clens[:], preBits, codePre) {
		return br.fail(errPrecode, at)
	}
	at = br.consumed()
	lens := z.lens[:nlit+ndist]
	for i := 0; i < len(lens); {
		if br.n < 16 {
			br.refill()
		}
		if br.pos-len(br.in) > overrunLimit {
			return br.truncated()
		}
		e := z.pre[br.buf&(1<<preBits-1)]
		if e&entryBad != 0 {
			// Only an empty code-length code has no codes at all.
			return br.fail(errNoPrecode, br.consumed())
		}
		symbolStart := br.consumed()
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
				return br.fail(errRepeatFirst, symbolStart)
			}
			value, repeat = lens[i-1], 3+int(br.bits(2))
		case 17:
			repeat = 3 + int(br.bits(3))
		default:
			repeat = 11 + int(br.bits(7))
		}
		if i+repeat > len(lens) {
			return br.fail(errRepeatPast, symbolStart)
		}
		for range repeat {
			lens[i] = value
			i++
		}
	}
	if br.overrun() {
		return br.truncated()
	}
	if lens[256] == 0 {
		return br.fail(errNoEnd, at)
	}
	if !buildTable(z.lit[:], lens[:nlit], litBits, codeLit) {
		return br.fail(errLitLengths, at)
	}
	if !buildTable(z.dist[:], lens[nlit:], distBits, codeDist) {
		return br.fail(errDistLengths, at)
	}
	return nil
}

// buildTable builds the lookup table of the canonical Huffman code with
// the given code lengths (RFC 1951 3.2.2): a first level indexed by
// tableBits input bits, and second-level tables of 15-tableBits bits for
// longer codes. Like zlib's inflate_table, it refuses over-subscribed
// sets and incomplete ones, except a single one-bit literal/length or
// distance code, and an empty set (whose every lookup is invalid).
func buildTable(table []uint32, lens []uint8, tableBits uint, kind int) bool {
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
		table[i] = entryBad
	}
	if maxLen == 0 {
		return true
	}
	if left > 0 && (kind == codePre || maxLen != 1) {
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
		entry := symbolEntry(kind, sym, l)
		if uint(l) <= tableBits {
			for i := rev; i < uint32(size); i += 1 << l {
				table[i] = entry
			}
			continue
		}
		low := rev & uint32(size-1)
		p := table[low]
		if p&entrySub == 0 {
			if nextSub+1<<subBits > len(table) {
				return false // cannot happen: tables are sized for the worst case
			}
			p = uint32(nextSub)<<16 | entrySub
			table[low] = p
			for i := range 1 << subBits {
				table[nextSub+i] = entryBad
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
