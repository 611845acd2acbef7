package inflate

import (
	"encoding/binary"
	"fmt"
	"hash/adler32"
)

// The ways a zlib header (RFC 1950 2.2) is refused, in the order zlib's
// inflate checks them.
var (
	errZlibCheck  = fmt.Errorf("%w: header check (FCHECK) fails", ErrHeader)
	errZlibMethod = fmt.Errorf("%w: compression method is not deflate", ErrHeader)
	errZlibWindow = fmt.Errorf("%w: window size above 32 KiB", ErrHeader)
	errZlibDict   = fmt.Errorf("%w: preset dictionary", ErrHeader)
)

// DecodeZlib decodes the zlib stream (RFC 1950) at the start of src into
// dst and returns the number of bytes it produced. The semantics are
// those of zlib's uncompress(), which qemu uses for the grains of
// compressed VMDK images (block/vmdk.c):
//
//   - the header must name deflate with a window of at most 32 KiB, pass
//     its check and ask for no preset dictionary;
//   - the stream is decoded to its end and the Adler-32 of the output is
//     checked against its trailer; bytes after the trailer are ignored;
//   - a stream with more output than dst holds is refused (ErrOverrun);
//   - a stream with less is not: n < len(dst) is no error here, because a
//     grain at the end of a disk may hold less than a grain. A caller
//     that needs dst full compares n with len(dst).
//
// Errors are *Error with Format "zlib", whose offsets count from the
// start of src (the header's first byte is byte 0); n is then the number
// of bytes written to dst before decoding failed.
func DecodeZlib(dst, src []byte) (n int, err error) {
	if len(src) < 2 {
		return 0, &Error{Format: "zlib", Offset: int64(len(src)), Err: ErrTruncated}
	}
	cmf, flg := src[0], src[1]
	var bad error
	at := 0
	switch {
	case (uint(cmf)<<8|uint(flg))%31 != 0:
		bad, at = errZlibCheck, 1
	case cmf&0x0f != 8: // CM: 8 is deflate
		bad = errZlibMethod
	case cmf>>4 > 7: // CINFO: log2 of the window size, minus 8
		bad = errZlibWindow
	case flg&0x20 != 0: // FDICT
		bad, at = errZlibDict, 1
	}
	if bad != nil {
		return 0, &Error{Format: "zlib", Offset: int64(at), Err: bad}
	}
	z := decoders.Get().(*decoder)
	defer decoders.Put(z)
	n, end, err := z.inflate(dst, src, 2, true)
	if err != nil {
		if e, ok := err.(*Error); ok {
			e.Format = "zlib"
		}
		return n, err
	}
	if end+4 > len(src) {
		return n, &Error{Format: "zlib", Offset: int64(len(src)), Err: ErrTruncated}
	}
	if want, got := binary.BigEndian.Uint32(src[end:]), adler32.Checksum(dst[:n]); got != want {
		return n, &Error{Format: "zlib", Offset: int64(end),
			Err: fmt.Errorf("%w (trailer %#08x, output %#08x)", ErrChecksum, want, got)}
	}
	return n, nil
}
