package inflate_test

import (
	"errors"
	"fmt"

	"github.com/ucphhpc/gen-vm-image-go/internal/inflate"
)

func ExampleDecode() {
	// A final fixed-Huffman block (RFC 1951 3.2.6): "ab", then a match of
	// length 4 at distance 2, then the end of the block.
	src := []byte{0x4b, 0x4c, 0x02, 0x41, 0x00}
	dst := make([]byte, 6)
	err := inflate.Decode(dst, src)
	fmt.Printf("%q %v\n", dst, err)
	// Output: "ababab" <nil>
}

func ExampleError() {
	// A final block of the reserved type 3.
	err := inflate.Decode(make([]byte, 16), []byte{0x07})
	fmt.Println(err)
	var e *inflate.Error
	fmt.Println(errors.As(err, &e), e.Offset, errors.Is(err, inflate.ErrBlockType))
	// Output:
	// deflate: at input byte 0: invalid block type 3
	// true 0 true
}
