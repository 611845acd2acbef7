package genvm_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	genvm "github.com/ucphhpc/gen-vm-image-go"
)

// Generate a blank 20 GiB qcow2 image, as `gen-vm-image single
// basic-disk-image 20G -V 1.0 -od DIR` does.
func ExampleGenerate() {
	dir, _ := os.MkdirTemp("", "genvm-example")
	defer os.RemoveAll(dir)

	res, err := genvm.Generate(context.Background(), genvm.Spec{
		Name:            "basic-disk-image",
		Size:            "20G",
		Version:         "1.0",
		OutputDirectory: dir,
	})
	if err != nil {
		fmt.Println("failed with return code", genvm.CodeOf(err), err)
		return
	}
	st, _ := os.Stat(res.Path)
	fmt.Println(filepath.Base(res.Path), res.Created, st.Size() < 1<<20)
	// Output: basic-disk-image-1.0.qcow2 true true
}
