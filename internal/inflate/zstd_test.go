package inflate

import (
	"bytes"
	"errors"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestDecodeZstd(t *testing.T) {
	cluster := make([]byte, 64<<10)
	for i := range cluster {
		cluster[i] = byte(i * 7 / 3)
	}
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Two frames, a skippable frame between them, and trailing garbage
	// after the cluster is complete.
	var src []byte
	src = enc.EncodeAll(cluster[:20000], src)
	src = append(src, 0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3)
	src = enc.EncodeAll(cluster[20000:], src)
	src = append(src, 0x28, 0xb5, 0x2f, 0xfd, 0xde, 0xad)
	got := make([]byte, len(cluster))
	if err := DecodeZstd(got, src); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, cluster) {
		t.Fatal("wrong output")
	}
	// A frame longer than the cluster: the first cluster is kept.
	long := append(append([]byte{}, cluster...), cluster...)
	if err := DecodeZstd(got, enc.EncodeAll(long, nil)); err != nil || !bytes.Equal(got, cluster) {
		t.Fatalf("long frame: %v", err)
	}

	// Hand-made frames: the content size in 8 bytes, a raw block and an
	// RLE block.
	hand := []byte{0x28, 0xb5, 0x2f, 0xfd, 0xe0, 7, 0, 0, 0, 0, 0, 0, 0, 0x18, 0, 0, 'a', 'b', 'c', 0x23, 0, 0, 'd'}
	if err := DecodeZstd(got[:7], hand); err != nil || string(got[:7]) != "abcdddd" {
		t.Fatalf("hand-made frame: %q, %v", got[:7], err)
	}

	one := enc.EncodeAll(cluster[:1000], nil)
	bad := append([]byte{}, one...)
	bad[len(bad)/2] ^= 0xff
	tests := []struct {
		name string
		src  []byte
		want error
		at   int64
	}{
		{"short", one, ErrShort, int64(len(one))},
		{"empty", nil, ErrShort, 0},
		{"magic cut", one[:3], ErrTruncated, 0},
		{"frame cut", one[:len(one)-1], ErrTruncated, 0},
		{"header cut", one[:4], ErrTruncated, 0},
		{"bad magic", append([]byte{1, 2, 3, 4}, one...), ErrFrame, 0},
		{"second frame bad", append(append([]byte{}, one...), 0, 0, 0, 0), ErrFrame, int64(len(one))},
		{"reserved header bit", append([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x08}, one[5:]...), ErrFrame, 0},
		{"reserved block type", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x20, 0, 6, 0, 0}, ErrFrame, 0},
		{"block header cut", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x20, 0, 1}, ErrTruncated, 0},
		{"block cut", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x20, 3, 0x19, 0, 0, 'a', 'b'}, ErrTruncated, 0},
		{"checksum cut", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x24, 0, 1, 0, 0, 1, 2}, ErrTruncated, 0},
		{"skippable header cut", []byte{0x50, 0x2a, 0x4d, 0x18, 3}, ErrTruncated, 0},
		{"skippable past the data", []byte{0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1}, ErrTruncated, 0},
		{"corrupt block", bad, ErrFrame, 0},
		{"frame too large", zstdLargeFrame(t), ErrFrame, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := DecodeZstd(got, tt.src)
			var e *Error
			if !errors.Is(err, tt.want) || !errors.As(err, &e) || e.Format != "zstd" || e.Offset != tt.at {
				t.Fatalf("got %v; want %v at %d", err, tt.want, tt.at)
			}
		})
	}
}

// zstdLargeFrame is a frame that declares 5 MiB of content, more than a
// frame may: refused before the decoder allocates for it.
func zstdLargeFrame(t *testing.T) []byte {
	enc, err := zstd.NewWriter(nil, zstd.WithWindowSize(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	return enc.EncodeAll(make([]byte, 5<<20), nil)
}
