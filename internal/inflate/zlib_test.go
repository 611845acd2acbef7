package inflate

import (
	"bytes"
	stdzlib "compress/zlib"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/klauspost/compress/zlib"
)

// zlibEncode compresses b with compress/zlib (std) or klauspost's zlib.
func zlibEncode(b []byte, level int, std bool) []byte {
	var buf bytes.Buffer
	var w io.WriteCloser
	if std {
		w, _ = stdzlib.NewWriterLevel(&buf, level)
	} else {
		w, _ = zlib.NewWriterLevel(&buf, level)
	}
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// DecodeZlib decodes what real zlib encoders write, as VMDK grains: a
// whole grain, the shorter last grain of a disk, trailing bytes (a grain
// marker's padding to a sector), and refuses a grain larger than dst.
func TestDecodeZlibEncoders(t *testing.T) {
	const grain = 64 << 10
	for _, kind := range []string{"random", "text", "zeros", "runs", "mixed"} {
		for _, level := range []int{0, 1, 6, 9, -2} {
			for _, std := range []bool{false, true} {
				name := fmt.Sprintf("%s level %d std %v", kind, level, std)
				want := testData(kind, grain, uint64(level+10))
				src := zlibEncode(want, level, std)
				dst := make([]byte, grain)
				n, err := DecodeZlib(dst, append(src, make([]byte, 511)...))
				if err != nil || n != grain || !bytes.Equal(dst, want) {
					t.Fatalf("%s: n %d, %v", name, n, err)
				}
				// The last grain of a disk whose size is 100 sectors past a grain.
				last := want[:100*512]
				n, err = DecodeZlib(dst, zlibEncode(last, level, std))
				if err != nil || n != len(last) || !bytes.Equal(dst[:n], last) {
					t.Fatalf("%s, short grain: n %d, %v", name, n, err)
				}
				if _, err := DecodeZlib(dst[:grain-1], src); !errors.Is(err, ErrOverrun) {
					t.Fatalf("%s, one byte too many: %v", name, err)
				}
				if _, err := DecodeZlib(dst, src[:len(src)-1]); !errors.Is(err, ErrTruncated) {
					t.Fatalf("%s, trailer cut: %v", name, err)
				}
				bad := append([]byte{}, src...)
				bad[len(bad)-1] ^= 1
				if _, err := DecodeZlib(dst, bad); !errors.Is(err, ErrChecksum) {
					t.Fatalf("%s, bad checksum: %v", name, err)
				}
			}
		}
	}
}

// BenchmarkDecodeZlib: one 64 KiB grain of mixed content at a time, ours
// against klauspost/compress/zlib (streaming, reset per grain).
func BenchmarkDecodeZlib(b *testing.B) {
	var grains [][]byte
	for i := range 64 {
		grains = append(grains, zlibEncode(testData("mixed", 64<<10, uint64(i)), 6, false))
	}
	dst := make([]byte, 64<<10)
	b.Run("DecodeZlib", func(b *testing.B) {
		b.SetBytes(int64(len(grains)) << 16)
		for range b.N {
			for _, g := range grains {
				if _, err := DecodeZlib(dst, g); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("klauspost", func(b *testing.B) {
		b.SetBytes(int64(len(grains)) << 16)
		var src bytes.Reader
		src.Reset(grains[0])
		zr, err := zlib.NewReader(&src)
		if err != nil {
			b.Fatal(err)
		}
		for range b.N {
			for _, g := range grains {
				src.Reset(g)
				zr.(zlib.Resetter).Reset(&src, nil)
				if _, err := io.ReadFull(zr, dst); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
