package inflate

import (
	"bytes"
	stdflate "compress/flate"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/flate"
)

// testData returns n bytes of a kind: random, text, zeros, runs (short
// periods, for overlapping matches) or mixed.
func testData(kind string, n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	switch kind {
	case "random":
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
	case "text":
		words := []string{"the ", "qcow2 ", "cluster ", "deflate ", "inflate ", "\n", "0123456789", "zero "}
		for i := 0; i < n; {
			i += copy(b[i:], words[rng.IntN(len(words))])
		}
	case "runs":
		for i := 0; i < n; {
			period := 1 + rng.IntN(9)
			unit := make([]byte, period)
			for j := range unit {
				unit[j] = byte(rng.Uint32())
			}
			end := min(n, i+rng.IntN(600))
			for ; i < end; i++ {
				b[i] = unit[i%period]
			}
		}
	case "mixed":
		for i := 0; i < n; {
			k := []string{"random", "text", "zeros", "runs"}[rng.IntN(4)]
			part := testData(k, min(n-i, 1+rng.IntN(5000)), rng.Uint64())
			i += copy(b[i:], part)
		}
	}
	return b
}

// Decode decodes what real deflate encoders write, at every level
// (stored, fixed and dynamic blocks), for every qcow2 cluster size.
func TestDecodeEncoders(t *testing.T) {
	type encoder struct {
		name  string
		level int
		std   bool
	}
	var encoders []encoder
	for _, l := range []int{0, 1, 2, 5, 6, 9, -2} { // -2: Huffman only
		encoders = append(encoders, encoder{fmt.Sprintf("klauspost%d", l), l, false}, encoder{fmt.Sprintf("std%d", l), l, true})
	}
	for _, size := range []int{512, 4096, 65536, 2 << 20} {
		for _, kind := range []string{"random", "text", "zeros", "runs", "mixed"} {
			for _, enc := range encoders {
				if size == 2<<20 && (kind != "mixed" || enc.level != 6 && enc.level != 0) {
					continue // keep it quick
				}
				want := testData(kind, size, uint64(size))
				var buf bytes.Buffer
				var w io.WriteCloser
				if enc.std {
					w, _ = stdflate.NewWriter(&buf, enc.level)
				} else {
					w, _ = flate.NewWriter(&buf, enc.level)
				}
				w.Write(want)
				w.Close()
				src := buf.Bytes()
				got := make([]byte, size)
				if err := Decode(got, src); err != nil {
					t.Fatalf("%d %s %s: %v", size, kind, enc.name, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%d %s %s: wrong output", size, kind, enc.name)
				}
				// Trailing bytes are ignored.
				if err := Decode(got, append(src, 0xff, 0x00, 0x13)); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%d %s %s with trailing bytes: %v", size, kind, enc.name, err)
				}
				// A prefix of the output is fine (qemu stops at one cluster).
				if err := Decode(got[:size/2+1], src); err != nil || !bytes.Equal(got[:size/2+1], want[:size/2+1]) {
					t.Fatalf("%d %s %s, half: %v", size, kind, enc.name, err)
				}
				// Asking for more than the stream holds, or cutting the
				// stream short, fails.
				if err := Decode(make([]byte, size+1), src); err == nil {
					t.Fatalf("%d %s %s: one byte more than the stream holds: no error", size, kind, enc.name)
				}
				// Cut short: fails exactly when compress/flate cannot
				// produce the cluster either (a cut may only remove the
				// empty final block).
				cut := src[:len(src)*3/4]
				_, stdErr := io.ReadFull(stdflate.NewReader(bytes.NewReader(cut)), make([]byte, size))
				if err := Decode(got, cut); (err == nil) != (stdErr == nil) {
					t.Fatalf("%d %s %s: truncated stream: %v; compress/flate: %v", size, kind, enc.name, err, stdErr)
				}
			}
		}
	}
}

// BenchmarkDecode: one 64 KiB cluster of mixed content at a time, ours
// against klauspost/compress/flate (streaming, reset per cluster).
func BenchmarkDecode(b *testing.B) {
	var clusters [][]byte
	for i := range 64 {
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, 6)
		w.Write(testData("mixed", 64<<10, uint64(i)))
		w.Close()
		clusters = append(clusters, buf.Bytes())
	}
	dst := make([]byte, 64<<10)
	b.Run("Decode", func(b *testing.B) {
		b.SetBytes(int64(len(clusters)) << 16)
		for range b.N {
			for _, c := range clusters {
				if err := Decode(dst, c); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("klauspost", func(b *testing.B) {
		b.SetBytes(int64(len(clusters)) << 16)
		var src bytes.Reader
		fr := flate.NewReader(&src)
		for range b.N {
			for _, c := range clusters {
				src.Reset(c)
				fr.(flate.Resetter).Reset(&src, nil)
				if _, err := io.ReadFull(fr, dst); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
