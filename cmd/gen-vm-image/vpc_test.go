package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// vpcInput writes a raw disk of n bytes with data at both ends and a hole
// between.
func vpcInput(t *testing.T, path string, n int64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	b := make([]byte, n)
	for i := range min(n, 300<<10) {
		b[i] = byte(rng.Uint32())
	}
	for i := max(0, n-5000); i < n; i++ {
		b[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestVpcAzure: single -of vpc -o subformat=fixed,force_size=on makes a
// fixed VHD of a whole number of MiB, as Azure requires, says so with -v,
// and qemu-img reads it as the input.
func TestVpcAzure(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	vpcInput(t, filepath.Join(dir, "in.raw"), 3000001)
	r := gvi(t, dir, "single", "-i", "in.raw", "-of", "vpc", "-o", "subformat=fixed,force_size=on", "-v", "--no-sync", "azure", "5000001")
	res := r.result(t)
	if r.code != 0 {
		t.Fatalf("exit %d: %+v", r.code, res)
	}
	if !strings.Contains(strings.Join(res.VerboseMessages, "\n"), "5242880 bytes, not the 5000001 asked for: Azure") {
		t.Errorf("-v does not say the size was rounded up to a MiB: %q", res.VerboseMessages)
	}
	out := filepath.Join(dir, "generated-images", "azure.vpc")
	q := qemuVpcInfo(t, out)
	if q.Format != "vpc" || q.VirtualSize != 5<<20 || q.ClusterSize != 0 {
		t.Fatalf("qemu-img info: %+v", q)
	}
	if st, _ := os.Stat(out); st.Size() != 5<<20+512 {
		t.Fatalf("a fixed disk of 5 MiB takes %d bytes", st.Size())
	}
	oracle.AssertSame(t, out, "vpc", filepath.Join(dir, "in.raw"), "raw")
}

// qemuVpcInfo is qemu-img info -f vpc (a fixed VHD is probed as raw).
func qemuVpcInfo(t *testing.T, path string) oracle.Info {
	t.Helper()
	var q oracle.Info
	if err := json.Unmarshal([]byte(oracle.MustRun(t, "info", "-f", "vpc", "--output=json", path)), &q); err != nil {
		t.Fatal(err)
	}
	return q
}

// TestVpcAlias: vhd is accepted for vpc on -of, -if, -O, -f and in
// architecture files (format: and input.format:); the image is named
// .vhd when asked for as vhd; info gives qemu-img info's figures, field
// by field.
func TestVpcAlias(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	vpcInput(t, filepath.Join(dir, "in.raw"), 5<<20+3)
	oracle.MustRun(t, "convert", "-f", "raw", "-O", "qcow2", filepath.Join(dir, "in.raw"), filepath.Join(dir, "in.qcow2"))

	// single: qcow2 -> vhd (dynamic), then vhd -> vpc fixed, declared as vhd.
	if r := gvi(t, dir, "single", "-i", "in.qcow2", "-of", "vhd", "--no-sync", "dyn", "6M"); r.code != 0 {
		t.Fatalf("single -of vhd: exit %d\n%s", r.code, r.stderr)
	}
	dyn := filepath.Join(dir, "generated-images", "dyn.vhd")
	if r := gvi(t, dir, "single", "-i", dyn, "-if", "vhd", "-of", "vpc", "-o", "subformat=fixed", "--no-sync", "fixed", "6M"); r.code != 0 {
		t.Fatalf("single -if vhd: exit %d\n%s", r.code, r.stderr)
	}
	fixed := filepath.Join(dir, "generated-images", "fixed.vpc")
	for _, img := range []string{dyn, fixed} {
		oracle.AssertSame(t, img, "vpc", filepath.Join(dir, "in.raw"), "raw")
		q := qemuVpcInfo(t, img)
		// 6 MiB is 6301696 bytes of CHS geometry, as qemu-img create makes it.
		if q.VirtualSize != 6301696 {
			t.Fatalf("%s: virtual size %d", img, q.VirtualSize)
		}
	}

	// info: the same JSON as qemu-img info, field by field.
	r := gvi(t, dir, "info", "--output", "json", dyn)
	var ours, theirs map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &ours); err != nil {
		t.Fatalf("info: exit %d: %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if err := json.Unmarshal([]byte(oracle.MustRun(t, "info", "--output=json", dyn)), &theirs); err != nil {
		t.Fatal(err)
	}
	for k, v := range theirs {
		if k != "actual-size" && !reflect.DeepEqual(ours[k], v) {
			t.Errorf("info %s: %v, qemu-img says %v", k, ours[k], v)
		}
	}

	// convert: -O vhd to a .vhd name, -f vhd back to raw.
	if r := gvi(t, dir, "convert", "-O", "vhd", "-o", "subformat=fixed", "in.raw", "c.vhd"); r.code != 0 {
		t.Fatalf("convert -O vhd: exit %d\n%s", r.code, r.stderr)
	}
	if r := gvi(t, dir, "convert", "-f", "vhd", "-O", "raw", "c.vhd", "c.raw"); r.code != 0 {
		t.Fatalf("convert -f vhd: exit %d\n%s", r.code, r.stderr)
	}
	oracle.AssertSame(t, filepath.Join(dir, "c.vhd"), "vpc", filepath.Join(dir, "c.raw"), "raw")
	oracle.AssertSame(t, filepath.Join(dir, "c.raw"), "raw", filepath.Join(dir, "in.raw"), "raw")

	// multiple: format: vhd with format_options, input format: vhd.
	arch := filepath.Join(dir, "arch.yml")
	if err := os.WriteFile(arch, []byte(fmt.Sprintf(`owner: test
images:
  a:
    name: a
    size: 7000001
    format: vhd
    format_options:
      subformat: fixed
      force_size: "on"
    input:
      path: %s
      format: vhd
`, dyn)), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := gvi(t, dir, "multiple", arch, "--no-sync"); r.code != 0 {
		t.Fatalf("multiple: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	a := filepath.Join(dir, "generated-images", "a.vhd")
	if q := qemuVpcInfo(t, a); q.VirtualSize != 7<<20 || q.ClusterSize != 0 {
		t.Fatalf("multiple: %+v", q)
	}
	oracle.AssertSame(t, a, "vpc", filepath.Join(dir, "in.raw"), "raw")

	// Resizing after conversion: growing is done above; shrinking a VHD
	// input is refused (code 7) unless --allow-shrink.
	if r := gvi(t, dir, "single", "-i", dyn, "-of", "vhd", "--no-sync", "small", "1M"); r.code != 7 {
		t.Fatalf("shrink without --allow-shrink: exit %d\n%s", r.code, r.stderr)
	}
	if r := gvi(t, dir, "single", "-i", dyn, "-of", "vhd", "-o", "force_size=on", "--allow-shrink", "--no-sync", "small", "1M"); r.code != 0 {
		t.Fatalf("shrink with --allow-shrink: exit %d\n%s", r.code, r.stderr)
	}
	small := filepath.Join(dir, "generated-images", "small.vhd")
	if q := qemuVpcInfo(t, small); q.VirtualSize != 1<<20 {
		t.Fatalf("shrunk: %+v", q)
	}
	head := filepath.Join(dir, "head.raw")
	b, _ := os.ReadFile(filepath.Join(dir, "in.raw"))
	if err := os.WriteFile(head, b[:1<<20], 0o644); err != nil {
		t.Fatal(err)
	}
	oracle.AssertSame(t, small, "vpc", head, "raw")

	// An unknown value is code 5 and names the valid ones.
	r = gvi(t, dir, "single", "-of", "vhd", "-o", "subformat=sparse", "x", "1M")
	if res := r.result(t); r.code != 5 || !strings.Contains(res.Response, "dynamic, fixed") {
		t.Fatalf("subformat=sparse: exit %d: %s", r.code, res.Response)
	}
}
