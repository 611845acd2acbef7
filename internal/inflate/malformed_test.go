package inflate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/adler32"
	"testing"
)

// bitWriter builds deflate streams bit by bit (RFC 1951 3.1.1: data
// elements LSB first, Huffman codes MSB first), for streams no encoder
// writes.
type bitWriter struct {
	bits []byte // one bit a byte
	at   int    // byte offset recorded by mark; -1 if none
}

func newBitWriter() *bitWriter { return &bitWriter{at: -1} }

// value writes the n low bits of v, LSB first.
func (w *bitWriter) value(v uint64, n int) *bitWriter {
	for i := range n {
		w.bits = append(w.bits, byte(v>>i&1))
	}
	return w
}

// code writes a Huffman code of n bits, MSB first.
func (w *bitWriter) code(c uint32, n int) *bitWriter {
	for i := n - 1; i >= 0; i-- {
		w.bits = append(w.bits, byte(c>>i&1))
	}
	return w
}

func (w *bitWriter) align() *bitWriter {
	for len(w.bits)%8 != 0 {
		w.bits = append(w.bits, 0)
	}
	return w
}

// bytes writes whole bytes from the next byte boundary.
func (w *bitWriter) bytes(b ...byte) *bitWriter {
	w.align()
	for _, c := range b {
		w.value(uint64(c), 8)
	}
	return w
}

// mark records the byte that holds the next bit: where a test expects
// the decoder to report an error.
func (w *bitWriter) mark() *bitWriter {
	w.at = len(w.bits) / 8
	return w
}

func (w *bitWriter) header(final bool, typ int) *bitWriter {
	f := uint64(0)
	if final {
		f = 1
	}
	return w.value(f, 1).value(uint64(typ), 2)
}

func (w *bitWriter) out() []byte {
	b := make([]byte, (len(w.bits)+7)/8)
	for i, bit := range w.bits {
		b[i/8] |= bit << (i % 8)
	}
	return b
}

// fixed writes the code of a literal/length symbol of a fixed block
// (RFC 1951 3.2.6).
func (w *bitWriter) fixed(sym int) *bitWriter {
	switch {
	case sym < 144:
		return w.code(uint32(0x30+sym), 8)
	case sym < 256:
		return w.code(uint32(0x190+sym-144), 9)
	case sym < 280:
		return w.code(uint32(sym-256), 7)
	}
	return w.code(uint32(0xc0+sym-280), 8)
}

func (w *bitWriter) literals(s string) *bitWriter {
	for _, c := range []byte(s) {
		w.fixed(int(c))
	}
	return w
}

func (w *bitWriter) end() *bitWriter { return w.fixed(256) }

// lengthSymbol and distSymbol find the code and extra bits of a length
// or distance (RFC 1951 3.2.5).
func lengthSymbol(length int) (sym, extra, nextra int) {
	i := len(lenBase) - 1
	for int(lenBase[i]) > length {
		i--
	}
	return 257 + i, length - int(lenBase[i]), int(lenExtra[i])
}

func distSymbol(distance int) (sym, extra, nextra int) {
	i := len(distBase) - 1
	for int(distBase[i]) > distance {
		i--
	}
	return i, distance - int(distBase[i]), int(distExtra[i])
}

// match writes a length and distance in a fixed block.
func (w *bitWriter) match(length, distance int) *bitWriter {
	sym, extra, n := lengthSymbol(length)
	w.fixed(sym).value(uint64(extra), n)
	sym, extra, n = distSymbol(distance)
	return w.code(uint32(sym), 5).value(uint64(extra), n)
}

// huffman is a canonical Huffman code (RFC 1951 3.2.2).
type huffman struct {
	lens  []uint8
	codes []uint32
}

func newHuffman(lens []uint8) huffman {
	var count [16]uint32
	for _, l := range lens {
		count[l]++
	}
	count[0] = 0
	var next [16]uint32
	code := uint32(0)
	for l := 1; l < 16; l++ {
		code = (code + count[l-1]) << 1
		next[l] = code
	}
	h := huffman{lens: lens, codes: make([]uint32, len(lens))}
	for s, l := range lens {
		if l != 0 {
			h.codes[s] = next[l]
			next[l]++
		}
	}
	return h
}

func (w *bitWriter) sym(h huffman, s int) *bitWriter { return w.code(h.codes[s], int(h.lens[s])) }

// clSym is a code-length symbol (RFC 1951 3.2.7) and its extra bits.
type clSym struct{ sym, extra int }

// literalLengths are the code-length symbols that give lens one by one.
func literalLengths(lens ...[]uint8) []clSym {
	var seq []clSym
	for _, l := range lens {
		for _, v := range l {
			seq = append(seq, clSym{int(v), 0})
		}
	}
	return seq
}

// goodPrecode is a complete code-length code for all 19 symbols.
var goodPrecode = func() (p [19]uint8) {
	for i := range p {
		p[i] = 4
		if i >= 13 {
			p[i] = 5
		}
	}
	return p
}()

// dynamicHeader writes the header of a dynamic block with nlit and ndist
// codes, the first nclen precode lengths (in the order of precodeOrder),
// and the code-length symbols seq.
func (w *bitWriter) dynamicHeader(final bool, nlit, ndist, nclen int, pre [19]uint8, seq []clSym) *bitWriter {
	w.header(final, 2).value(uint64(nlit-257), 5).value(uint64(ndist-1), 5).value(uint64(nclen-4), 4)
	for _, s := range precodeOrder[:nclen] {
		w.value(uint64(pre[s]), 3)
	}
	h := newHuffman(pre[:])
	for _, s := range seq {
		w.sym(h, s.sym)
		switch s.sym {
		case 16:
			w.value(uint64(s.extra), 2)
		case 17:
			w.value(uint64(s.extra), 3)
		case 18:
			w.value(uint64(s.extra), 7)
		}
	}
	return w
}

// dynamic writes the header of a dynamic block with the given code
// lengths, sent one by one.
func (w *bitWriter) dynamic(final bool, lit, dist []uint8) *bitWriter {
	return w.dynamicHeader(final, len(lit), len(dist), 19, goodPrecode, literalLengths(lit, dist))
}

// lengths returns n code lengths, zero but for the symbols given.
func lengths(n int, set map[int]uint8) []uint8 {
	l := make([]uint8, n)
	for s, v := range set {
		l[s] = v
	}
	return l
}

// small is a valid dynamic code: 'a' is the all-zero code 0 (so that
// zero padding decodes as 'a'), end of block 10, length 3 11; one
// distance code, 1 bit, for distance 1 ('1' is not a code).
var (
	smallLit  = lengths(258, map[int]uint8{'a': 1, 256: 2, 257: 2})
	smallDist = lengths(1, map[int]uint8{0: 1})
	smallL    = newHuffman(smallLit)
	smallD    = newHuffman(smallDist)
)

// padding is input after the point of failure, so that the fast loop
// (which needs 8 bytes ahead) runs, and so that a failure is not taken
// for the end of the input.
var padding = make([]byte, 24)

func (w *bitWriter) pad() *bitWriter { return w.bytes(padding...) }

// A malformed stream: built by build, decoded into dst bytes, it must
// fail with want (errors.Is) at the byte build marks (at the end of the
// input for ErrTruncated).
type malformed struct {
	name  string
	dst   int
	build func(w *bitWriter)
	want  error
}

func (m malformed) src() (src []byte, at int) {
	w := newBitWriter()
	m.build(w)
	return w.out(), w.at
}

// The streams of each rejection path, hand-built, with the class of
// error they must get and where. Decoding must not panic.
func TestDecodeMalformed(t *testing.T) {
	for _, tt := range malformedDeflate() {
		t.Run(tt.name, func(t *testing.T) {
			src, at := tt.src()
			err := Decode(make([]byte, tt.dst), src)
			checkError(t, err, "deflate", tt.want, at, src)
		})
	}
}

func malformedDeflate() []malformed {
	fast := 4096 // big enough for the fast loop
	return []malformed{
		// Block headers.
		{"block type 3", 16, func(w *bitWriter) { w.mark().header(true, 3).pad() }, ErrBlockType},
		{"block type 3 after a block", 16, func(w *bitWriter) {
			w.header(false, 1).literals("ab").end().mark().header(true, 3).pad()
		}, ErrBlockType},
		{"stored LEN/NLEN mismatch", 16, func(w *bitWriter) {
			w.header(true, 0).align().mark().bytes(5, 0, 0xfa, 0xfe).pad()
		}, ErrStoredLength},
		{"stored empty with NLEN 0", 16, func(w *bitWriter) {
			w.header(true, 0).align().mark().bytes(0, 0, 0, 0).pad()
		}, ErrStoredLength},

		// Dynamic block headers (RFC 1951 3.2.7).
		{"HLIT 287", 16, func(w *bitWriter) {
			w.header(true, 2).mark().value(30, 5).value(0, 5).value(0, 4).pad()
		}, errCodeCount},
		{"HLIT 288", 16, func(w *bitWriter) {
			w.header(true, 2).mark().value(31, 5).value(0, 5).value(0, 4).pad()
		}, errCodeCount},
		{"HDIST 31", 16, func(w *bitWriter) {
			w.header(true, 2).mark().value(0, 5).value(30, 5).value(0, 4).pad()
		}, errCodeCount},
		{"HDIST 32", 16, func(w *bitWriter) {
			w.header(true, 2).mark().value(0, 5).value(31, 5).value(0, 4).pad()
		}, errCodeCount},
		{"code lengths code over-subscribed", 16, func(w *bitWriter) {
			w.header(true, 2).value(0, 5).value(0, 5).value(0, 4).mark()
			w.value(1, 3).value(1, 3).value(1, 3).value(0, 3).pad()
		}, errPrecode},
		{"code lengths code incomplete", 16, func(w *bitWriter) {
			w.header(true, 2).value(0, 5).value(0, 5).value(0, 4).mark()
			w.value(2, 3).value(2, 3).value(0, 3).value(0, 3).pad()
		}, errPrecode},
		{"code lengths code of one 1-bit code", 16, func(w *bitWriter) { // zlib refuses; compress/flate does not
			w.header(true, 2).value(0, 5).value(0, 5).value(0, 4).mark()
			w.value(0, 3).value(0, 3).value(0, 3).value(1, 3).pad()
		}, errPrecode},
		{"code lengths code empty", 16, func(w *bitWriter) {
			w.header(true, 2).value(0, 5).value(0, 5).value(0, 4)
			w.value(0, 3).value(0, 3).value(0, 3).value(0, 3).mark().pad()
		}, errNoPrecode},
		{"repeat with no previous length", 16, func(w *bitWriter) {
			w.dynamicHeader(true, 257, 1, 19, goodPrecode, nil).mark()
			w.dynamicSeq(goodPrecode, []clSym{{16, 0}}).pad()
		}, errRepeatFirst},
		{"zero repeat past the end", 16, func(w *bitWriter) {
			w.dynamicHeader(true, 257, 1, 19, goodPrecode, []clSym{{18, 127}}).mark()
			w.dynamicSeq(goodPrecode, []clSym{{18, 127}}).pad()
		}, errRepeatPast},
		{"short zero repeat past the end", 16, func(w *bitWriter) {
			w.dynamicHeader(true, 257, 1, 19, goodPrecode, []clSym{{18, 127}, {18, 106}, {0, 0}}).mark()
			w.dynamicSeq(goodPrecode, []clSym{{17, 0}}).pad()
		}, errRepeatPast},
		{"previous length repeat past the end", 16, func(w *bitWriter) {
			w.dynamicHeader(true, 257, 1, 19, goodPrecode, []clSym{{18, 127}, {18, 106}, {8, 0}}).mark()
			w.dynamicSeq(goodPrecode, []clSym{{16, 0}}).pad()
		}, errRepeatPast},
		{"no end-of-block code", 16, func(w *bitWriter) { // zlib refuses; compress/flate does not
			w.header(true, 2).value(0, 5).value(0, 5).value(15, 4)
			for _, s := range precodeOrder {
				w.value(uint64(goodPrecode[s]), 3)
			}
			w.mark().dynamicSeq(goodPrecode, literalLengths(lengths(257, map[int]uint8{'a': 1, 'b': 1}), []uint8{1})).pad()
		}, errNoEnd},
		{"literal/length code over-subscribed", 16, func(w *bitWriter) {
			w.dynamicMarked(lengths(257, map[int]uint8{'a': 1, 'b': 1, 256: 1}), []uint8{1}).pad()
		}, errLitLengths},
		{"literal/length code incomplete", 16, func(w *bitWriter) {
			w.dynamicMarked(lengths(257, map[int]uint8{'a': 2, 256: 2}), []uint8{1}).pad()
		}, errLitLengths},
		{"distance code over-subscribed", 16, func(w *bitWriter) {
			w.dynamicMarked(smallLit, []uint8{1, 1, 1}).pad()
		}, errDistLengths},
		{"distance code incomplete", 16, func(w *bitWriter) {
			w.dynamicMarked(smallLit, []uint8{2, 2}).pad()
		}, errDistLengths},

		// Codes in the data: the fast loop (big output, input ahead) and
		// the careful loop (near the end of the output).
		{"literal/length code 286, fast loop", fast, func(w *bitWriter) {
			w.header(true, 1).literals("abc").mark().fixed(286).pad()
		}, ErrLitCode},
		{"literal/length code 287, careful loop", 16, func(w *bitWriter) {
			w.header(true, 1).literals("abc").mark().fixed(287).pad()
		}, ErrLitCode},
		{"literal/length code not in a one-code set, fast loop", fast, func(w *bitWriter) {
			w.dynamic(true, lengths(257, map[int]uint8{256: 1}), []uint8{1}).mark().code(1, 1).pad()
		}, ErrLitCode},
		{"literal/length code not in a one-code set, careful loop", 16, func(w *bitWriter) {
			w.dynamic(true, lengths(257, map[int]uint8{256: 1}), []uint8{1}).mark().code(1, 1).pad()
		}, ErrLitCode},
		{"distance code 30, fast loop", fast, func(w *bitWriter) {
			w.header(true, 1).literals("abc").fixed(257).mark().code(30, 5).pad()
		}, ErrDistCode},
		{"distance code 31, careful loop", 16, func(w *bitWriter) {
			w.header(true, 1).literals("abc").fixed(257).mark().code(31, 5).pad()
		}, ErrDistCode},
		{"distance code not in a one-code set, fast loop", fast, func(w *bitWriter) {
			w.dynamic(true, smallLit, smallDist).sym(smallL, 'a').sym(smallL, 257).mark().code(1, 1).pad()
		}, ErrDistCode},
		{"distance code not in a one-code set, careful loop", 16, func(w *bitWriter) {
			w.dynamic(true, smallLit, smallDist).sym(smallL, 'a').sym(smallL, 257).mark().code(1, 1).pad()
		}, ErrDistCode},
		{"no distance codes", 16, func(w *bitWriter) { // an empty distance code is legal until used
			w.dynamic(true, smallLit, []uint8{0}).sym(smallL, 'a').sym(smallL, 257).mark().code(0, 1).pad()
		}, ErrDistCode},
		{"distance before the output, fast loop", fast, func(w *bitWriter) {
			w.header(true, 1).literals("abc").fixed(257)
			w.mark().code(3, 5).value(1, 1).pad() // distance 5
		}, ErrDistance},
		{"distance before the output, careful loop", 16, func(w *bitWriter) {
			w.header(true, 1).literals("abc").fixed(257)
			w.mark().code(3, 5).value(1, 1).pad()
		}, ErrDistance},
		{"distance from the first symbol, fast loop", fast, func(w *bitWriter) {
			w.header(true, 1).fixed(257).mark().code(0, 5).pad()
		}, ErrDistance},
		{"distance 32768 after 32767 bytes", 40000, func(w *bitWriter) {
			w.header(false, 0).align()
			w.bytes(0xff, 0x7f, 0x00, 0x80)
			w.bytes(make([]byte, 32767)...)
			w.header(true, 1).fixed(257).mark().code(29, 5).value(8191, 13).pad()
		}, ErrDistance},

		// Streams that end, complete, too soon.
		{"final stored block short", 16, func(w *bitWriter) {
			w.header(true, 0).align().bytes(3, 0, 0xfc, 0xff, 'a', 'b', 'c').mark()
		}, ErrShort},
		{"final fixed block short", 16, func(w *bitWriter) {
			w.header(true, 1).literals("abc").end().align().mark()
		}, ErrShort},
		{"empty final block", 16, func(w *bitWriter) { w.header(true, 1).end().align().mark() }, ErrShort},

		// The input ends in every state of the decoder.
		{"empty input", 16, func(w *bitWriter) {}, ErrTruncated},
		{"in the block header", 16, func(w *bitWriter) { w.value(1, 1) }, ErrTruncated},
		{"in stored LEN", 16, func(w *bitWriter) { w.header(true, 0).bytes(5) }, ErrTruncated},
		{"in stored NLEN", 16, func(w *bitWriter) { w.header(true, 0).bytes(5, 0, 0xfa) }, ErrTruncated},
		{"in stored data", 16, func(w *bitWriter) { w.header(true, 0).bytes(5, 0, 0xfa, 0xff, 'a', 'b') }, ErrTruncated},
		{"after a stored block", 16, func(w *bitWriter) { w.header(false, 0).bytes(2, 0, 0xfd, 0xff, 'a', 'b') }, ErrTruncated},
		{"in HLIT", 16, func(w *bitWriter) { w.header(true, 2).value(0, 3) }, ErrTruncated},
		{"in HCLEN", 16, func(w *bitWriter) { w.header(true, 2).value(0, 5).value(0, 5).value(15, 2) }, ErrTruncated},
		{"in the code lengths code", 16, func(w *bitWriter) {
			w.header(true, 2).value(0, 5).value(0, 5).value(15, 4).value(4, 3).value(4, 3).value(4, 3)
		}, ErrTruncated},
		{"early in the code lengths", 16, func(w *bitWriter) {
			w.dynamicHeader(true, 286, 30, 19, goodPrecode, literalLengths(smallLit[:10]))
		}, ErrTruncated},
		{"late in the code lengths", 16, func(w *bitWriter) {
			w.dynamicHeader(true, 258, 1, 19, goodPrecode, literalLengths(smallLit[:250]))
		}, ErrTruncated},
		{"in a code length repeat", 16, func(w *bitWriter) {
			w.dynamicHeader(true, 258, 1, 19, goodPrecode, literalLengths(smallLit[:250]))
			w.sym(newHuffman(goodPrecode[:]), 18)
		}, ErrTruncated},
		{"right after the code lengths", 16, func(w *bitWriter) {
			w.dynamic(true, lengths(257, map[int]uint8{'b': 1, 256: 1}), []uint8{1})
		}, ErrTruncated},
		{"in a literal code", 16, func(w *bitWriter) { w.header(true, 1).literals("ab").code(0x9, 4) }, ErrTruncated},
		{"in a length's extra bits", 16, func(w *bitWriter) {
			w.header(true, 1).literals("ab").fixed(265)
		}, ErrTruncated},
		{"in a distance code", 16, func(w *bitWriter) {
			w.header(true, 1).literals("abc").fixed(257).code(1, 2)
		}, ErrTruncated},
		{"in a distance's extra bits", 16, func(w *bitWriter) {
			w.header(true, 1).literals("abcdef").fixed(257).code(9, 5) // 3 extra bits, 1 in the input
		}, ErrTruncated},
		{"no end of block", 16, func(w *bitWriter) { w.header(true, 1).literals("abc") }, ErrTruncated},
		{"no final block", 16, func(w *bitWriter) { w.header(false, 1).literals("abc").end() }, ErrTruncated},
		{"end of block read from padding", 16, func(w *bitWriter) {
			w.header(false, 1).literals("abc").code(0, 2) // EOB is 7 zero bits
		}, ErrTruncated},
		{"literals read from padding fill the output", 20, func(w *bitWriter) {
			w.dynamic(true, smallLit, smallDist).sym(smallL, 'a')
		}, ErrTruncated},
		{"literals read from padding run on", 1000, func(w *bitWriter) {
			w.dynamic(true, smallLit, smallDist).sym(smallL, 'a')
		}, ErrTruncated},
		{"a match read from padding", 16, func(w *bitWriter) {
			w.dynamic(true, smallLit, smallDist).sym(smallL, 'a').code(0b11, 2)
		}, ErrTruncated},
	}
}

// dynamicSeq writes code-length symbols with the precode pre.
func (w *bitWriter) dynamicSeq(pre [19]uint8, seq []clSym) *bitWriter {
	h := newHuffman(pre[:])
	for _, s := range seq {
		w.sym(h, s.sym)
		switch s.sym {
		case 16:
			w.value(uint64(s.extra), 2)
		case 17:
			w.value(uint64(s.extra), 3)
		case 18:
			w.value(uint64(s.extra), 7)
		}
	}
	return w
}

// dynamicMarked writes a dynamic block header whose code lengths the
// decoder must refuse, marking the start of the lengths.
func (w *bitWriter) dynamicMarked(lit, dist []uint8) *bitWriter {
	w.header(true, 2).value(uint64(len(lit)-257), 5).value(uint64(len(dist)-1), 5).value(15, 4)
	for _, s := range precodeOrder {
		w.value(uint64(goodPrecode[s]), 3)
	}
	return w.mark().dynamicSeq(goodPrecode, literalLengths(lit, dist))
}

// checkError checks that err is an *Error of format with cause want, at
// the byte marked (or at the end of src for ErrTruncated).
func checkError(t *testing.T, err error, format string, want error, at int, src []byte) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got %v; want %v", err, want)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%v is not an *Error", err)
	}
	if errors.Is(want, ErrTruncated) {
		at = len(src)
	}
	if e.Format != format || e.Offset != int64(at) {
		t.Fatalf("got %v (format %s, offset %d); want format %s, offset %d", err, e.Format, e.Offset, format, at)
	}
}

// zlibWrap puts a zlib header and the Adler-32 of out around a deflate
// stream.
func zlibWrap(deflate, out []byte) []byte {
	b := append([]byte{0x78, 0x9c}, deflate...)
	return binary.BigEndian.AppendUint32(b, adler32.Checksum(out))
}

// zlibHeader is a header with CMF cmf and FLG flags, with FCHECK made
// right.
func zlibHeader(cmf, flags byte) []byte {
	flg := flags &^ 31
	flg += byte(31 - (uint(cmf)<<8|uint(flg))%31)
	if (uint(cmf)<<8|uint(flg))%31 != 0 {
		flg -= 31
	}
	return []byte{cmf, flg}
}

func TestDecodeZlibMalformed(t *testing.T) {
	for _, tt := range malformedZlib() {
		t.Run(tt.name, func(t *testing.T) {
			src, at := tt.src()
			_, err := DecodeZlib(make([]byte, tt.dst), src)
			checkError(t, err, "zlib", tt.want, at, src)
		})
	}
}

func malformedZlib() []malformed {
	stream := func(cmf, flg byte) func(w *bitWriter) {
		return func(w *bitWriter) {
			w.mark().bytes(zlibHeader(cmf, flg)...).header(true, 1).literals("ab").end().align()
			w.bytes(binary.BigEndian.AppendUint32(nil, adler32.Checksum([]byte("ab")))...)
		}
	}
	return []malformed{
		{"empty", 16, func(w *bitWriter) {}, ErrTruncated},
		{"one header byte", 16, func(w *bitWriter) { w.bytes(0x78) }, ErrTruncated},
		{"FCHECK wrong", 16, func(w *bitWriter) { w.bytes(0x78).mark().bytes(0x9d).pad() }, errZlibCheck},
		{"CM 7", 16, stream(0x77, 0x80), errZlibMethod},
		{"CM 15", 16, stream(0x7f, 0x80), errZlibMethod},
		{"CINFO 8", 16, stream(0x88, 0x80), errZlibWindow},
		{"CINFO 15", 16, stream(0xf8, 0x80), errZlibWindow},
		{"FDICT", 16, func(w *bitWriter) {
			w.bytes(zlibHeader(0x78, 0xa0)[0]).mark().bytes(zlibHeader(0x78, 0xa0)[1]).pad()
		}, errZlibDict},
		{"no data", 16, func(w *bitWriter) { w.bytes(0x78, 0x9c) }, ErrTruncated},
		{"bad block type", 16, func(w *bitWriter) {
			w.bytes(0x78, 0x9c).mark().header(true, 3).pad()
		}, ErrBlockType},
		{"Adler-32 mismatch", 16, func(w *bitWriter) {
			w.bytes(0x78, 0x9c).header(true, 1).literals("ab").end().align().mark().bytes(0, 0xc6, 0, 0xc4).pad()
		}, ErrChecksum},
		{"Adler-32 of the whole output, not of dst", 16, func(w *bitWriter) {
			w.bytes(0x78, 0x9c).header(true, 1).literals("ab").end().align().mark()
			w.bytes(binary.BigEndian.AppendUint32(nil, adler32.Checksum(make([]byte, 16)))...)
		}, ErrChecksum},
		{"no trailer", 16, func(w *bitWriter) { w.bytes(0x78, 0x9c).header(true, 1).literals("ab").end() }, ErrTruncated},
		{"trailer cut", 16, func(w *bitWriter) {
			w.bytes(0x78, 0x9c).header(true, 1).literals("ab").end().bytes(0, 0xc6, 0)
		}, ErrTruncated},
		{"no end of block once the output is full", 2, func(w *bitWriter) {
			w.bytes(0x78, 0x9c).header(true, 1).literals("ab")
		}, ErrTruncated},
		{"no final block once the output is full", 2, func(w *bitWriter) {
			w.bytes(0x78, 0x9c).header(false, 1).literals("ab").end()
		}, ErrTruncated},
		{"stored data cut once the output is full", 2, func(w *bitWriter) {
			w.bytes(0x78, 0x9c).header(true, 0).bytes(2, 0, 0xfd, 0xff, 'a')
		}, ErrTruncated},

		// More output than dst holds.
		{"a literal past the end", 2, func(w *bitWriter) {
			w.bytes(0x78, 0x9c).header(true, 1).literals("ab").mark().literals("c").end().pad()
		}, ErrOverrun},
		{"a match past the end", 4, func(w *bitWriter) {
			w.bytes(0x78, 0x9c).header(true, 1).literals("ab").mark().match(3, 2).end().pad()
		}, ErrOverrun},
		{"a match past the end of a big output", 300, func(w *bitWriter) {
			w.bytes(0x78, 0x9c).header(true, 1).literals("ab").match(258, 2).match(39, 2)
			w.mark().match(3, 1).end().pad()
		}, ErrOverrun},
		{"a stored block past the end", 2, func(w *bitWriter) {
			w.bytes(0x78, 0x9c).header(true, 0).bytes(3, 0, 0xfc, 0xff, 'a', 'b').mark().bytes('c').pad()
		}, ErrOverrun},
		{"a stored block after the output is full", 2, func(w *bitWriter) {
			w.bytes(0x78, 0x9c).header(false, 1).literals("ab").end()
			w.header(true, 0).bytes(1, 0, 0xfe, 0xff).mark().bytes('c').pad()
		}, ErrOverrun},
		{"a block with output after the output is full", 2, func(w *bitWriter) {
			w.bytes(0x78, 0x9c).header(false, 1).literals("ab").end().header(true, 1).mark().literals("c").end().pad()
		}, ErrOverrun},
		{"a bad code once the output is full", 2, func(w *bitWriter) {
			w.bytes(0x78, 0x9c).header(true, 1).literals("ab").mark().fixed(286).pad()
		}, ErrLitCode},
		{"a bad code after a full block", 2, func(w *bitWriter) {
			w.bytes(0x78, 0x9c).header(false, 1).literals("ab").end().header(true, 1).mark().fixed(287).pad()
		}, ErrLitCode},
		{"ErrShort is not for zlib: a bad block after a short one", 16, func(w *bitWriter) {
			w.bytes(0x78, 0x9c).header(false, 1).literals("ab").end().mark().header(true, 3).pad()
		}, ErrBlockType},
	}
}

// An empty output needs no input (qemu: inflate() with no room for output
// returns at once).
func TestDecodeEmpty(t *testing.T) {
	if err := Decode(nil, nil); err != nil {
		t.Fatal(err)
	}
}

// Streams zlib accepts that no encoder writes.
func TestDecodeZlibOdd(t *testing.T) {
	tests := []struct {
		name  string
		dst   int
		build func(w *bitWriter)
		want  string
	}{
		{"nothing", 0, func(w *bitWriter) { w.header(true, 1).end() }, ""},
		{"less than dst", 16, func(w *bitWriter) { w.header(true, 1).literals("ab").end() }, "ab"},
		{"exactly dst, then empty blocks", 2, func(w *bitWriter) {
			w.header(false, 1).literals("ab").end().header(false, 0).bytes(0, 0, 0xff, 0xff)
			w.dynamic(false, smallLit, smallDist).sym(smallL, 256).header(true, 1).end()
		}, "ab"},
		{"exactly dst, then empty dynamic blocks", 2, func(w *bitWriter) {
			// At different bit offsets: the end of a block's header leaves
			// a varying number of bits buffered.
			w.header(false, 1).literals("ab").end()
			for range 8 {
				w.dynamic(false, smallLit, smallDist).sym(smallL, 256).header(false, 1).end()
			}
			w.header(true, 1).end()
		}, "ab"},
		{"a match that ends at the end of dst", 5, func(w *bitWriter) { w.header(true, 1).literals("ab").match(3, 1).end() }, "abbbb"},
		{"a stored block that ends at the end of dst", 3, func(w *bitWriter) {
			w.header(false, 1).literals("a").end().header(true, 0).bytes(2, 0, 0xfd, 0xff, 'b', 'c')
		}, "abc"},
		{"CINFO 0, FLEVEL 3", 16, nil, "ab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newBitWriter()
			var src []byte
			if tt.build != nil {
				tt.build(w)
				src = zlibWrap(w.out(), []byte(tt.want))
			} else {
				w.bytes(zlibHeader(0x08, 0xc0)...).header(true, 1).literals(tt.want).end()
				src = binary.BigEndian.AppendUint32(w.out(), adler32.Checksum([]byte(tt.want)))
			}
			src = append(src, "trailing bytes are ignored"...)
			dst := make([]byte, tt.dst)
			n, err := DecodeZlib(dst, src)
			if err != nil || !bytes.Equal(dst[:n], []byte(tt.want)) {
				t.Fatalf("got %q, %v; want %q", dst[:n], err, tt.want)
			}
		})
	}
}

// A stream whose last code fills the output and ends the input, with no
// end-of-block code after it: zlib (and qemu) accept it, reading only
// the bits of that code; compress/flate refuses it when the code is
// shorter than the block's end-of-block code, which it reads ahead for.
func TestDecodeLastCodeEndsInput(t *testing.T) {
	w := newBitWriter()
	w.dynamic(true, smallLit, smallDist)
	n := 0
	for ; n == 0 || len(w.bits)%8 != 0; n++ {
		w.sym(smallL, 'a') // 1 bit; the end of block takes 2
	}
	dst := make([]byte, n)
	if err := Decode(dst, w.out()); err != nil || !bytes.Equal(dst, bytes.Repeat([]byte("a"), n)) {
		t.Fatalf("got %q, %v", dst, err)
	}
	if err := Decode(make([]byte, n+1), w.out()); !errors.Is(err, ErrTruncated) {
		t.Fatalf("one byte more: %v; want ErrTruncated", err)
	}
}
