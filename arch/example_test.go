package arch_test

import (
	"fmt"

	"github.com/ucphhpc/gen-vm-image-go/arch"
)

func ExampleParse() {
	_, err := arch.Parse([]byte(`owner: me
images:
  image-1:
    name: rocky
    version: 9.4
  image-2:
    name: debian
    size: 10GB
`), "architecture.yml")
	fmt.Println(err)
	// Output:
	// architecture.yml:3: images.image-1: missing required key "size"
	// architecture.yml:8: images.image-2.size: invalid size "10GB": expected a number of bytes with an optional suffix B, K, M, G, T, P or E (in either case; powers of 1024), e.g. 20G or 1.5T
}
