package size_test

import (
	"fmt"

	"github.com/ucphhpc/gen-vm-image-go/size"
)

func ExampleParse() {
	for _, s := range []string{"20G", "1.5g", "512", "10GB"} {
		n, err := size.Parse(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(n, size.Format(n))
	}
	// Output:
	// 21474836480 20 GiB
	// 1610612736 1.5 GiB
	// 512 512 B
	// invalid size "10GB": expected a number of bytes with an optional suffix B, K, M, G, T, P or E (in either case; powers of 1024), e.g. 20G or 1.5T
}
