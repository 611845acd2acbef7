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

// Build every image of an architecture file, as `gen-vm-image multiple
// architecture.yml -od DIR --fail-fast` does: the BuildSpec says what to
// build, the options how to run.
func ExampleBuild() {
	dir, _ := os.MkdirTemp("", "genvm-example")
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "architecture.yml")
	os.WriteFile(file, []byte(`owner: example
images:
  disk:
    name: disk
    size: 1G
  disk-raw:
    name: disk
    size: 1G
    format: raw
`), 0o644)

	a, err := genvm.LoadArchitecture(file)
	if err != nil {
		fmt.Println("failed with return code", genvm.CodeOf(err), err)
		return
	}
	res, err := genvm.Build(context.Background(), genvm.BuildSpec{
		Architecture:    a,
		OutputDirectory: filepath.Join(dir, "images"),
	}, genvm.WithFailFast(), genvm.WithoutSync())
	if err != nil {
		fmt.Println("failed with return code", genvm.CodeOf(err), err)
		return
	}
	for _, im := range res.Images {
		fmt.Println(im.Key, filepath.Base(im.Path), im.Created)
	}
	// Output:
	// disk disk.qcow2 true
	// disk-raw disk.raw true
}
