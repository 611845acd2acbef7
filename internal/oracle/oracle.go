// Package oracle runs qemu-img in tests: the independent judge of every image
// we write. It is never used at run time.
package oracle

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// RequireEnv is the variable that turns a missing qemu-img from a skip into a
// failure; .ci/run sets it after installing qemu-utils.
const RequireEnv = "GVI_REQUIRE_ORACLE"

// QemuImg returns the path of qemu-img, or skips the test (fails it when
// GVI_REQUIRE_ORACLE=1) when it is absent.
func QemuImg(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("qemu-img")
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("qemu-img not found and %s=1: install qemu-utils", RequireEnv)
		}
		t.Skip("qemu-img not found: oracle test skipped (install qemu-utils, or set GVI_REQUIRE_ORACLE=1 to make this fail)")
	}
	return p
}

// Run runs qemu-img with args and returns stdout, stderr and the exit code.
func Run(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	// Making a LUKS image, qemu-img times key derivation on the thread's
	// CPU clock and gives up when the clock barely moves, as it can on a
	// loaded machine: that failure is qemu's, so it is tried again.
	for range 5 {
		stdout, stderr, code = run(t, args...)
		if code == 0 || !strings.Contains(stderr, "Unable to get accurate CPU usage") {
			break
		}
	}
	return stdout, stderr, code
}

func run(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(QemuImg(t), args...)
	// In a directory of its own: qemu-img creates the files an option
	// names relative to it (data_file=data.raw), never in the source tree.
	cmd.Dir = t.TempDir()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("qemu-img %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return o.String(), e.String(), code
}

// MustRun runs qemu-img and fails the test unless it exits 0.
func MustRun(t testing.TB, args ...string) string {
	t.Helper()
	out, errOut, code := Run(t, args...)
	if code != 0 {
		t.Fatalf("qemu-img %v: exit %d\n%s%s", args, code, out, errOut)
	}
	return out
}

// Info is the part of `qemu-img info --output=json` tests look at.
type Info struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
	ActualSize  int64  `json:"actual-size"`
	ClusterSize int64  `json:"cluster-size"`
	DirtyFlag   bool   `json:"dirty-flag"`
	Backing     string `json:"backing-filename"`
	Specific    struct {
		Type string `json:"type"`
		Data struct {
			Compat          string `json:"compat"`
			CompressionType string `json:"compression-type"`
			LazyRefcounts   bool   `json:"lazy-refcounts"`
			RefcountBits    int    `json:"refcount-bits"`
			Corrupt         bool   `json:"corrupt"`
			ExtendedL2      bool   `json:"extended-l2"`
		} `json:"data"`
	} `json:"format-specific"`
}

// ImageInfo runs qemu-img info --output=json on path.
func ImageInfo(t testing.TB, path string) Info {
	t.Helper()
	out := MustRun(t, "info", "--output=json", path)
	var info Info
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("qemu-img info %s: %v\n%s", path, err, out)
	}
	return info
}

// CheckReport is `qemu-img check --output=json`.
type CheckReport struct {
	CheckErrors        int   `json:"check-errors"`
	Corruptions        int   `json:"corruptions"`
	Leaks              int   `json:"leaks"`
	ImageEndOffset     int64 `json:"image-end-offset"`
	TotalClusters      int64 `json:"total-clusters"`
	AllocatedClusters  int64 `json:"allocated-clusters"`
	FragmentedClusters int64 `json:"fragmented-clusters"`
	CompressedClusters int64 `json:"compressed-clusters"`
}

// Check runs qemu-img check --output=json and returns its report and exit code.
func Check(t testing.TB, path, format string) (CheckReport, int) {
	t.Helper()
	out, errOut, code := Run(t, "check", "--output=json", "-f", format, path)
	var r CheckReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("qemu-img check %s: exit %d: %v\n%s%s", path, code, err, out, errOut)
	}
	return r, code
}

// AssertQcow2 checks what every qcow2 we write must satisfy: check passes
// with no errors and no leaks; info says qcow2, the virtual size, compat 1.1,
// not dirty, not corrupt.
func AssertQcow2(t testing.TB, path string, virtualSize int64) Info {
	t.Helper()
	r, code := Check(t, path, "qcow2")
	if code != 0 || r.CheckErrors != 0 || r.Corruptions != 0 || r.Leaks != 0 {
		out, _, _ := Run(t, "check", "-f", "qcow2", path)
		t.Fatalf("qemu-img check %s: exit %d, %+v\n%s", path, code, r, out)
	}
	info := ImageInfo(t, path)
	if info.Format != "qcow2" || info.VirtualSize != virtualSize || info.Specific.Data.Compat != "1.1" ||
		info.DirtyFlag || info.Specific.Data.Corrupt {
		t.Fatalf("qemu-img info %s: %+v; want qcow2, virtual size %d, compat 1.1, clean", path, info, virtualSize)
	}
	return info
}

// AssertSame runs qemu-img compare (strict with -s when strict is set) and
// fails unless the two images have the same content.
func AssertSame(t testing.TB, a, aFormat, b, bFormat string) {
	t.Helper()
	out, errOut, code := Run(t, "compare", "-f", aFormat, "-F", bFormat, a, b)
	if code != 0 {
		t.Fatalf("qemu-img compare %s %s: exit %d\n%s%s", a, b, code, out, errOut)
	}
}

// ImageSpec is an image for MakeImages: a file name and the arguments of
// qemu-img create before it ("-f", "vmdk", ...). Images without a backing
// file (-b) are 1 MiB.
type ImageSpec struct {
	Name string
	Args []string
}

// MakeImages makes small images with qemu-img create, in one temporary
// directory in the given order (so that an overlay can name an image made
// before it), and returns their bytes by name. For fuzz seeds, which must
// not skip: without qemu-img it returns nothing, and an image qemu-img
// cannot make is left out.
func MakeImages(specs []ImageSpec) map[string][]byte {
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		return nil
	}
	dir, err := os.MkdirTemp("", "oracle-images")
	if err != nil {
		return nil
	}
	defer os.RemoveAll(dir)
	images := map[string][]byte{}
	for _, s := range specs {
		args := append(append([]string{"create", "-q"}, s.Args...), filepath.Join(dir, s.Name))
		if !slices.Contains(s.Args, "-b") {
			args = append(args, "1M")
		}
		cmd := exec.Command(qemuImg, args...)
		cmd.Dir = dir
		if cmd.Run() == nil {
			if b, err := os.ReadFile(filepath.Join(dir, s.Name)); err == nil {
				images[s.Name] = b
			}
		}
	}
	return images
}
