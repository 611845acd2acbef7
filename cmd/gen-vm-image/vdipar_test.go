package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
	"github.com/ucphhpc/gen-vm-image-go/internal/testcorpus"
)

// TestVdiParallelsAsQemu: info (text and JSON) and check (JSON, exit code)
// of VDI and Parallels images give what qemu-img gives, for qemu-img's
// images, ours, and the corpus's; convert writes both, and qemu-img finds
// the result identical to the source.
func TestVdiParallelsAsQemu(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	raw, _ := patternImage(t, dir, 3<<20+4096, false)
	var images []string
	for _, tc := range []struct{ name, format, opt string }{
		{"q.vdi", "vdi", ""},
		{"qs.vdi", "vdi", "static=on"},
		{"q.hdd", "parallels", ""},
		{"q64k.hdd", "parallels", "cluster_size=64K"},
	} {
		q := filepath.Join(dir, tc.name)
		args := []string{"convert", "-f", "raw", "-O", tc.format}
		if tc.opt != "" {
			args = append(args, "-o", tc.opt)
		}
		oracle.MustRun(t, append(args, raw, q)...)
		ours := filepath.Join(dir, "ours-"+tc.name)
		args = []string{"convert", "-O", tc.format}
		if tc.opt != "" {
			args = append(args, "-o", tc.opt)
		}
		if r := gvi(t, dir, append(args, raw, ours)...); r.code != 0 {
			t.Fatalf("convert -O %s: exit %d %s%s", tc.format, r.code, r.stdout, r.stderr)
		}
		oracle.AssertSame(t, raw, "raw", ours, tc.format)
		images = append(images, q, ours)
	}
	empty := filepath.Join(dir, "empty.hdd")
	oracle.MustRun(t, "create", "-q", "-f", "parallels", empty, "100M")
	images = append(images, empty)
	if corpus, ok := testcorpus.Lookup(); ok {
		for _, name := range []string{"parallels-v1", "parallels-v2", "parallels-with-bitmap"} {
			images = append(images, filepath.Join(corpus, "qemu", name))
		}
	}
	asMap := func(t *testing.T, s string) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatalf("%v:\n%s", err, s)
		}
		return m
	}
	for _, img := range images {
		if _, err := os.Stat(img); err != nil {
			continue
		}
		t.Run(filepath.Base(img), func(t *testing.T) {
			want := oracle.MustRun(t, "info", img)
			if r := gvi(t, dir, "info", img); r.stdout != want {
				t.Errorf("info:\n%s\nqemu-img:\n%s", r.stdout, want)
			}
			want = oracle.MustRun(t, "info", "--output", "json", img)
			if r := gvi(t, dir, "info", "--output", "json", img); !reflect.DeepEqual(asMap(t, r.stdout), asMap(t, want)) {
				t.Errorf("info --output json:\n%s\nqemu-img:\n%s", r.stdout, want)
			}
			want, _, code := oracle.Run(t, "check", "--output", "json", img)
			r := gvi(t, dir, "check", "--output", "json", img)
			ours, theirs := asMap(t, r.stdout), asMap(t, want)
			// qemu-img leaves out the counts that are zero, and prints its
			// findings on stderr, not as "problems".
			delete(ours, "problems")
			for _, k := range []string{"corruptions", "leaks"} {
				if ours[k] == 0.0 {
					delete(ours, k)
				}
			}
			if r.code != code || !reflect.DeepEqual(ours, theirs) {
				t.Errorf("check --output json: exit %d\n%s\nqemu-img: exit %d\n%s", r.code, r.stdout, code, want)
			}
		})
	}
}
