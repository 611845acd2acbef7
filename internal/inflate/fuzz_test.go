package inflate

import (
	"bytes"
	stdflate "compress/flate"
	"errors"
	"io"
	"testing"

	"github.com/klauspost/compress/flate"
)

// FuzzDecode compares Decode with Go's compress/flate: whenever
// compress/flate produces the output, Decode must produce the same bytes,
// unless it refuses the stream as zlib (and so qemu) does; it must never
// panic.
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
	f.Fuzz(func(t *testing.T, size uint16, src []byte) {
		n := int(size)%(40<<10) + 1
		got := make([]byte, n)
		err := Decode(got, src)
		want := make([]byte, n)
		_, stdErr := io.ReadFull(stdflate.NewReader(bytes.NewReader(src)), want)
		if errors.Is(err, errNoEnd) || errors.Is(err, errPrecode) {
			return // zlib is stricter than compress/flate here
		}
		if stdErr == nil {
			if err != nil {
				t.Fatalf("compress/flate decodes %d bytes; Decode: %v", n, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("output differs from compress/flate")
			}
		}
	})
}
