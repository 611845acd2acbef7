// Command ocipull pulls the disk of a KubeVirt containerDisk into a download
// cache, through the same library calls as `gen-vm-image single -i
// oci://REF` before it converts (oci.Resolve, then fetch.FetchLayer on the
// topmost layer with a disk), and prints where the disk is. For the
// registry case of bench.sh, which times the transfer alone: the
// conversion after it is timed by the other cases.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"

	"github.com/ucphhpc/gen-vm-image-go/fetch"
	"github.com/ucphhpc/gen-vm-image-go/publish/oci"
)

func main() {
	cache := flag.String("cache", "", "the download cache (default: gen-vm-image's)")
	insecure := flag.Bool("insecure", false, "allow a registry that speaks plain HTTP")
	flag.Parse()
	if flag.NArg() != 1 {
		log.Fatal("usage: ocipull [-cache DIR] [-insecure] REGISTRY/REPOSITORY:TAG")
	}
	ctx := context.Background()
	var opts []oci.Option
	if *insecure {
		opts = append(opts, oci.WithInsecure())
	}
	img, err := oci.Resolve(ctx, flag.Arg(0), opts...)
	if err != nil {
		log.Fatal(err)
	}
	for i := len(img.Layers) - 1; i >= 0; i-- {
		l := img.Layers[i]
		res, err := fetch.FetchLayer(ctx, fetch.LayerRequest{
			Digest: l.Digest, Size: l.Size, Compression: l.Compression, Dir: oci.DiskDir, Source: oci.Scheme + img.Pinned(), CacheDir: *cache,
			Open: func(ctx context.Context) (io.ReadCloser, error) { return img.Open(ctx, l) },
		})
		if errors.Is(err, fetch.ErrNoMember) {
			continue
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(res.Path)
		return
	}
	log.Fatalf("%s has no disk", flag.Arg(0))
}
