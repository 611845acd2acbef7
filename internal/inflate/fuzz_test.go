package inflate

import (
	"bytes"
	stdflate "compress/flate"
	stdzlib "compress/zlib"
	"errors"
	"io"
	"testing"

	"github.com/klauspost/compress/flate"
)

// zlibStricter reports whether err is a refusal of zlib's that Go's
// compress/flate does not make: a dynamic block without an end-of-block
// code, and a code-lengths code that is incomplete (compress/flate
// accepts a single one-bit code there).
func zlibStricter(err error) bool {
	return errors.Is(err, errNoEnd) || errors.Is(err, errPrecode)
}

// checkFuzzError checks what holds for every error: it is an *Error of
// the format, with a cause of a class, at an offset within the input.
func checkFuzzError(t *testing.T, err error, format string, src []byte) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Format != format || e.Offset < 0 || e.Offset > int64(len(src)) {
		t.Fatalf("error %v: not an *Error of %s within the %d bytes of input", err, format, len(src))
	}
	for _, class := range []error{ErrTruncated, ErrShort, ErrOverrun, ErrBlockType, ErrStoredLength,
		ErrCodeLengths, ErrLitCode, ErrDistCode, ErrDistance, ErrHeader, ErrChecksum} {
		if errors.Is(err, class) {
			return
		}
	}
	t.Fatalf("error %v of no class", err)
}

// FuzzDecode compares Decode with Go's compress/flate both ways, for an
// output of size%40960+1 bytes:
//
//   - what Decode accepts, compress/flate decodes to the same bytes: this
//     catches Decode accepting what zlib refuses;
//   - what compress/flate decodes to that many bytes, Decode accepts, but
//     where zlib (and so qemu) is stricter than compress/flate.
//
// Both read only as far as the output needs: bytes after the point where
// the output is full (trailing data, a stream cut off or corrupt there)
// count for neither. Almost: compress/flate reads at least as many bits
// for a literal/length code as the end-of-block code has, so it fails on
// a stream whose last literal fills the output with a code shorter than
// that and ends the input (zlib reads only the code's own bits, as
// Decode does). The first check therefore gives compress/flate the input
// followed by zero bytes; Decode, having read nothing past the end of
// the input, gives the same result on it. compress/flate's 32 KiB window
// is the largest a stream can use, so the one-shot decoder's unenforced
// window makes no difference.
func FuzzDecode(f *testing.F) {
	for i, kind := range []string{"random", "text", "zeros", "runs", "mixed"} {
		for _, level := range []int{0, 1, 6, 9, -2} {
			var buf bytes.Buffer
			w, _ := flate.NewWriter(&buf, level)
			w.Write(testData(kind, 3000, uint64(i)))
			w.Close()
			f.Add(uint16(3000), buf.Bytes())
		}
	}
	for _, m := range malformedDeflate() {
		src, _ := m.src()
		f.Add(uint16(m.dst-1), src)
	}
	f.Fuzz(func(t *testing.T, size uint16, src []byte) {
		n := int(size)%(40<<10) + 1
		got := make([]byte, n)
		err := Decode(got, src)
		want := make([]byte, n)
		if err == nil {
			padded := append(src[:len(src):len(src)], make([]byte, 8)...)
			if _, stdErr := io.ReadFull(stdflate.NewReader(bytes.NewReader(padded)), want); stdErr != nil {
				t.Fatalf("Decode accepts what compress/flate refuses: %v", stdErr)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("output differs from compress/flate")
			}
			return
		}
		_, stdErr := io.ReadFull(stdflate.NewReader(bytes.NewReader(src)), want)
		checkFuzzError(t, err, "deflate", src)
		if stdErr == nil && !zlibStricter(err) {
			t.Fatalf("compress/flate decodes %d bytes; Decode: %v", n, err)
		}
	})
}

// FuzzDecodeZlib compares DecodeZlib with Go's compress/zlib both ways,
// for an output buffer of size%40960 bytes: what one accepts (a whole
// stream, its checksum right, its output no larger than the buffer) the
// other accepts with the same bytes, but where zlib is stricter than
// compress/flate; a stream whose output is larger than the buffer is
// ErrOverrun. Bytes after the checksum count for neither.
func FuzzDecodeZlib(f *testing.F) {
	for i, kind := range []string{"random", "text", "zeros", "runs", "mixed"} {
		for _, level := range []int{0, 1, 6, 9, -2} {
			b := zlibEncode(testData(kind, 3000, uint64(i)), level, false)
			f.Add(uint16(3000), b)
			f.Add(uint16(2999), b)
		}
	}
	for _, m := range malformedZlib() {
		src, _ := m.src()
		f.Add(uint16(m.dst), src)
	}
	f.Fuzz(func(t *testing.T, size uint16, src []byte) {
		n := int(size) % (40 << 10)
		dst := make([]byte, n)
		got, err := DecodeZlib(dst, src)
		var want []byte
		zr, stdErr := stdzlib.NewReader(bytes.NewReader(src))
		if stdErr == nil {
			// One byte more than dst holds tells an overrun.
			want, stdErr = io.ReadAll(io.LimitReader(zr, int64(n)+1))
		}
		if err == nil {
			if stdErr != nil {
				t.Fatalf("DecodeZlib accepts what compress/zlib refuses: %v", stdErr)
			}
			if len(want) > n {
				t.Fatalf("DecodeZlib accepts a stream of more than %d bytes", n)
			}
			if !bytes.Equal(dst[:got], want) {
				t.Fatal("output differs from compress/zlib")
			}
			return
		}
		checkFuzzError(t, err, "zlib", src)
		if stdErr == nil && !zlibStricter(err) {
			if len(want) > n {
				if !errors.Is(err, ErrOverrun) {
					t.Fatalf("compress/zlib decodes more than %d bytes; DecodeZlib: %v", n, err)
				}
				return
			}
			t.Fatalf("compress/zlib decodes %d bytes; DecodeZlib: %v", len(want), err)
		}
	})
}
