package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
	"github.com/ucphhpc/gen-vm-image-go/internal/testcorpus"
)

// TestVHDXCheckAndInfoAsQemu: `check --output json` and `info --output
// json` of VHDX images (qemu-img's dynamic and fixed, ours, Hyper-V's)
// give qemu-img's figures and fields.
func TestVHDXCheckAndInfoAsQemu(t *testing.T) {
	oracle.QemuImg(t)
	work := t.TempDir()
	var images []string
	for _, opts := range []string{"subformat=dynamic", "subformat=fixed,block_size=1M"} {
		img := filepath.Join(work, strings.NewReplacer("=", "-", ",", "-").Replace(opts)+".vhdx")
		oracle.MustRun(t, "create", "-q", "-f", "vhdx", "-o", opts, img, "5M")
		images = append(images, img)
	}
	if r := gvi(t, work, "single", "ours", "3G", "-of", "vhdx", "-od", work); r.code != 0 {
		t.Fatalf("single: %d %s%s", r.code, r.stdout, r.stderr)
	}
	images = append(images, filepath.Join(work, "ours.vhdx"))
	for _, e := range testcorpus.Manifest(t) {
		if strings.HasSuffix(e.File, "iotest-dynamic-1G.vhdx") {
			if p, ok := testcorpus.Path(t, e, 128<<20); ok {
				images = append(images, p)
			}
		}
	}
	for _, img := range images {
		t.Run(filepath.Base(img), func(t *testing.T) {
			r := gvi(t, work, "check", "--output", "json", img)
			if r.code != 0 {
				t.Fatalf("check exit %d: %s%s", r.code, r.stdout, r.stderr)
			}
			var ours oracle.CheckReport
			if err := json.Unmarshal([]byte(r.stdout), &ours); err != nil {
				t.Fatal(err)
			}
			if theirs, _ := oracle.Check(t, img, "vhdx"); ours != theirs {
				t.Errorf("check: ours %+v\nqemu-img %+v", ours, theirs)
			}
			keys := func(text string) []string {
				var m map[string]any
				if err := json.Unmarshal([]byte(text), &m); err != nil {
					t.Fatalf("%v\n%s", err, text)
				}
				var k []string
				for key := range m {
					k = append(k, key)
				}
				slices.Sort(k)
				return k
			}
			out := gvi(t, work, "info", "--output", "json", img).stdout
			var info oracle.Info
			if err := json.Unmarshal([]byte(out), &info); err != nil {
				t.Fatal(err)
			}
			if q := oracle.ImageInfo(t, img); info != q {
				t.Errorf("info: ours %+v\nqemu-img %+v", info, q)
			}
			if o, q := keys(out), keys(oracle.MustRun(t, "info", "--output=json", img)); !slices.Equal(o, q) {
				t.Errorf("info fields: ours %v, qemu-img %v", o, q)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(work, "ours.vhdx")); err != nil {
		t.Fatal(err)
	}
}
