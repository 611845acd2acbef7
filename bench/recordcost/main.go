// Command recordcost hashes files as the record does (record.HashFile: the
// holes skipped, zeros hashed in their place), one after the other, and
// prints the seconds it took: what the record adds to a build at most,
// since a build hashes each image while it checks and syncs it.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/ucphhpc/gen-vm-image-go/record"
)

func main() {
	start := time.Now()
	var bytes int64
	for _, name := range os.Args[1:] {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		_, n, err := record.HashFile(context.Background(), f)
		f.Close()
		if err != nil {
			fmt.Fprintln(os.Stderr, name+":", err)
			os.Exit(1)
		}
		bytes += n
	}
	fmt.Printf("%.3f s for %d files, %d bytes\n", time.Since(start).Seconds(), len(os.Args)-1, bytes)
}
