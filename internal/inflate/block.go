package inflate

import "encoding/binary"

// decodeBlock decodes the symbols of one Huffman block (RFC 1951 3.2.5)
// into dst from op on. It returns the new output position, and full when
// dst is full; a match that runs past the end of dst is cut there, and
// br.cut says so.
//
// Errors are the bare causes; the caller adds the position. br is left
// at the start of the code refused (ErrLitCode, ErrDistCode) or after
// the match refused (ErrDistance; br.distEntry is its distance code's
// entry).
//
// This is the hot loop: the bit reader lives in locals, and matches are
// copied eight bytes at a time where the output has room to spare. What
// the error paths need is stored in br rather than kept in locals, which
// would cost the fast loop registers.
func decodeBlock(dst []byte, op int, br *bitReader, lit *litTable, dist *distTable) (_ int, full bool, err error) {
	const litMask, litSubMask = 1<<litBits - 1, 1<<litSubBits - 1
	in, pos, buf, n := br.in, br.pos, br.buf, br.n

	// The fast loop runs while neither the input nor the output can run
	// out during one iteration: 8 bytes of input to load, and room for the
	// longest match plus an 8-byte overcopy. It refills without a test,
	// then decodes up to three literals from those bits (first-level
	// literal codes are at most litBits long) before it refills again.
	// Shift counts are masked with 63: they are below 64 anyway, and the
	// mask spares the code Go adds for larger shifts.
	outFast := len(dst) - (258 + 8)
	for op < outFast && pos+8 <= len(in) {
		buf |= binary.LittleEndian.Uint64(in[pos:]) << (n & 63)
		pos += int((63 - n) >> 3)
		n |= 56 // at least 56 bits: enough for 3 literals, or a whole match

		e := lit[buf&litMask]
		if e&entryLiteral != 0 {
			buf >>= e & 63
			n -= uint(e & 0xff)
			dst[op] = byte(e >> 16)
			op++
			e = lit[buf&litMask]
			if e&entryLiteral == 0 {
				continue
			}
			buf >>= e & 63
			n -= uint(e & 0xff)
			dst[op] = byte(e >> 16)
			op++
			e = lit[buf&litMask]
			if e&entryLiteral == 0 {
				continue
			}
			buf >>= e & 63
			n -= uint(e & 0xff)
			dst[op] = byte(e >> 16)
			op++
			continue
		}
		saved := buf
		if e&entrySub != 0 {
			e = lit[e>>16+uint32(buf>>litBits)&litSubMask]
		}
		if e&entryBad != 0 {
			err = ErrLitCode
			break
		}
		buf >>= e & 63
		n -= uint(e & 0xff)
		if e&entryLiteral != 0 { // a long literal code
			dst[op] = byte(e >> 16)
			op++
			continue
		}
		if e&entryEnd != 0 {
			br.pos, br.buf, br.n = pos, buf, n
			return op, false, nil
		}
		length := entryValue(e, saved)

		saved = buf
		e = distEntry(dist, buf)
		if e&entryBad != 0 {
			err = ErrDistCode
			break
		}
		buf >>= e & 63
		n -= uint(e & 0xff)
		distance := entryValue(e, saved)
		if distance > op {
			err = errDistance(distance, op)
			br.distEntry = e
			break
		}
		// Copy the match (copyMatch, inlined by hand: the hottest call).
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
		op = copyMatch(dst, op, distance, length)
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
				if pos-len(in) > overrunLimit {
					err = ErrTruncated
					break
				}
			}
		}
		br.symbolN = n
		saved := buf
		e := litEntry(lit, buf)
		if e&entryBad != 0 {
			err = ErrLitCode
			break
		}
		buf >>= e & 0xff
		n -= uint(e & 0xff)
		if e&entryLiteral != 0 {
			dst[op] = byte(e >> 16)
			op++
			if op == len(dst) {
				full = true
				break
			}
			continue
		}
		if e&entryEnd != 0 {
			break
		}
		length := entryValue(e, saved)

		saved = buf
		e = distEntry(dist, buf)
		if e&entryBad != 0 {
			err = ErrDistCode
			break
		}
		buf >>= e & 0xff
		n -= uint(e & 0xff)
		distance := entryValue(e, saved)
		if distance > op {
			err = errDistance(distance, op)
			br.distEntry = e
			break
		}
		if op+length+8 <= len(dst) {
			op = copyMatch(dst, op, distance, length)
			continue
		}
		if op+length > len(dst) {
			br.cut = true
		}
		from := op - distance
		end := min(op+length, len(dst))
		for op < end {
			op += copy(dst[op:end], dst[from:op])
		}
		if op == len(dst) {
			full = true
			break
		}
	}
	br.pos, br.buf, br.n = pos, buf, n
	return op, full, err
}

// litEntry and distEntry look up the code at the start of bits, through
// a second-level table where the first level points to one. A code that
// does not exist gives an entry with entryBad set.
func litEntry(t *litTable, bits uint64) uint32 {
	e := t[bits&(1<<litBits-1)]
	if e&entrySub != 0 {
		e = t[e>>16+uint32(bits>>litBits)&(1<<litSubBits-1)]
	}
	return e
}

func distEntry(t *distTable, bits uint64) uint32 {
	e := t[bits&(1<<distBits-1)]
	if e&entrySub != 0 {
		e = t[e>>16+uint32(bits>>distBits)&(1<<distSubBits-1)]
	}
	return e
}

// entryValue is the length or distance of entry e: its base plus the
// extra bits that follow its code in bits, the input before the code was
// consumed.
func entryValue(e uint32, bits uint64) int {
	cl := e >> 8 & 0xf
	return int(e>>16) + int(bits>>cl&(1<<((e&0xff-cl)&63)-1))
}

// copyMatch copies a match of length bytes from distance back to op and
// returns the new op. dst must have 8 bytes to spare after the match:
// whole words are copied, and up to 7 bytes past it are written and later
// overwritten.
func copyMatch(dst []byte, op, distance, length int) int {
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
