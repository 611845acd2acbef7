//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Lose nothing: an interrupted run, a full disk or a read-only output
// directory leaves no temporary file and no half-written image, and never
// touches an image that was there before.

// slowInput writes a raw image of size bytes with 4 KiB of data in every
// 64 KiB: quick to create (a sixteenth of it is written), but every qcow2
// cluster of the output gets data, so converting it takes seconds.
func slowInput(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := bytes.Repeat([]byte{0xa5}, 4096)
	for off := int64(0); off < size; off += 64 << 10 {
		if _, err := f.WriteAt(block, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

// existingImage makes an image at dir/generated-images/NAME.qcow2 and
// returns its path and content.
func existingImage(t *testing.T, dir, name string) (string, []byte) {
	t.Helper()
	if r := gvi(t, dir, "single", name, "1M"); r.code != 0 {
		t.Fatalf("making the existing image: %s", r.stderr)
	}
	path := filepath.Join(dir, "generated-images", name+".qcow2")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, b
}

func assertUntouched(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the existing image is gone: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the existing image %s was changed (%d bytes, was %d)", path, len(got), len(want))
	}
}

// TestSignalDuringConversion interrupts `single --overwrite` while it
// converts, with SIGINT and with SIGTERM: the run fails, its temporary file
// is removed, and the image it would have replaced is untouched.
func TestSignalDuringConversion(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "in.raw")
			slowInput(t, in, 2<<30)
			target, before := existingImage(t, dir, "keep")
			out := filepath.Dir(target)

			cmd := exec.Command(binary, "single", "keep", "2G", "-i", in, "--overwrite")
			cmd.Dir = dir
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Signal as soon as the conversion has begun: its temporary
			// file exists.
			deadline := time.Now().Add(20 * time.Second)
			for !hasTempFile(out) {
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					t.Fatal("the conversion never started")
				}
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond)
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() <= 0 {
				t.Fatalf("exit %v; want a failure exit code (the run was interrupted, not killed)\n%s", err, stderr.String())
			}
			if !strings.Contains(stderr.String(), "Interrupted") {
				t.Errorf("the result does not say it was interrupted:\n%s", stderr.String())
			}
			assertNoTempFiles(t, out)
			assertUntouched(t, target, before)
			t.Logf("exit %d: %s", ee.ExitCode(), strings.TrimSpace(stderr.String()))
		})
	}
}

func hasTempFile(dir string) bool {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			return true
		}
	}
	return false
}

// mountTmpfs mounts a tmpfs with options at a new directory and unmounts it
// when the test ends. It skips (with the reason) where mounting is not
// permitted; tests run as root in CI and in the development container.
func mountTmpfs(t *testing.T, options string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, options); err != nil {
		t.Skipf("cannot mount a tmpfs (%v): this test needs root or CAP_SYS_ADMIN", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	return dir
}

func remountReadOnly(t *testing.T, dir string) {
	t.Helper()
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("remounting %s read-only: %v", dir, err)
	}
}

// TestDiskFull converts an image whose data cannot fit into a 2 MiB tmpfs:
// code 3 saying the device is full, no temporary file, and the existing
// image there untouched.
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.raw")
	slowInput(t, in, 64<<20) // 4 MiB of data
	mnt := mountTmpfs(t, "size=2M")
	// An existing image on the full file system.
	if r := gvi(t, dir, "single", "keep", "1M", "-od", mnt); r.code != 0 {
		t.Fatal(r.stderr)
	}
	target := filepath.Join(mnt, "keep.qcow2")
	before, _ := os.ReadFile(target)

	for _, args := range [][]string{
		{"single", "new", "64M", "-i", in, "-od", mnt},
		{"single", "keep", "64M", "-i", in, "-od", mnt, "--overwrite"},
		{"convert", "-O", "raw", in, filepath.Join(mnt, "new.raw")},
	} {
		r := gvi(t, dir, args...)
		if r.code != 3 || !strings.Contains(r.stderr, "no space left on device") {
			t.Errorf("%v: exit %d; want 3 saying no space left\n%s", args, r.code, r.stderr)
		}
		assertNoTempFiles(t, mnt)
		for _, name := range []string{"new.qcow2", "new.raw"} {
			if _, err := os.Lstat(filepath.Join(mnt, name)); err == nil {
				t.Errorf("%v: a half-written %s was left", args, name)
			}
		}
		assertUntouched(t, target, before)
	}
}

// TestReadOnlyOutput writes into a read-only file system (root ignores
// permission bits, so a read-only mount is the real test): code 3 saying
// so, and an existing image untouched.
func TestReadOnlyOutput(t *testing.T) {
	dir := t.TempDir()
	mnt := mountTmpfs(t, "size=4M")
	if r := gvi(t, dir, "single", "keep", "1M", "-od", mnt); r.code != 0 {
		t.Fatal(r.stderr)
	}
	target := filepath.Join(mnt, "keep.qcow2")
	before, _ := os.ReadFile(target)
	remountReadOnly(t, mnt)

	for _, args := range [][]string{
		{"single", "new", "1M", "-od", mnt},
		{"single", "keep", "1M", "-od", mnt, "--overwrite"},
		{"single", "deeper", "1M", "-od", filepath.Join(mnt, "sub")},
	} {
		r := gvi(t, dir, args...)
		if r.code != 3 || !strings.Contains(r.stderr, "read-only file system") {
			t.Errorf("%v: exit %d; want 3 saying read-only\n%s", args, r.code, r.stderr)
		}
		assertUntouched(t, target, before)
	}
	if entries, _ := os.ReadDir(mnt); len(entries) != 1 {
		t.Errorf("the read-only directory holds %d entries", len(entries))
	}
}

// TestNamesThatEscape: an image name or version that would put the image
// outside the output directory, or hide it there, is refused with code 5
// before anything is written; on the command line, in a JSON request and
// (NUL cannot be an argument) in JSON only.
func TestNamesThatEscape(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"single", "../x", "1M"},
		{"single", "/abs", "1M"},
		{"single", "a/b", "1M"},
		{"single", `a\b`, "1M"},
		{"single", "..", "1M"},
		{"single", ".hidden", "1M"},
		{"single", "ok", "1M", "-V", "../../x"},
		{"single", "ok", "1M", "-V", "/abs"},
	} {
		r := gvi(t, dir, args...)
		if resp := r.result(t); r.code != 5 || resp.Status != "failed" {
			t.Errorf("%v: exit %d %+v; want 5", args, r.code, resp)
		}
	}
	for _, req := range []map[string]any{
		{"name": "a\x00b", "size": "1M"},
		{"name": "ok", "size": "1M", "version": "1\x00"},
		{"name": "/abs", "size": "1M"},
		{"name": "../x", "size": "1M"},
	} {
		body, _ := json.Marshal(req)
		cmd := exec.Command(binary, "json")
		cmd.Dir = dir
		cmd.Stdin = bytes.NewReader(body)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 5 {
			t.Errorf("json %s: %v; want exit 5\n%s", body, err, stderr.String())
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "generated-images")); len(entries) != 0 {
		t.Errorf("refused names left files: %v", entries)
	}
	if _, err := os.Lstat(filepath.Join(filepath.Dir(dir), "x.qcow2")); err == nil {
		t.Error("an image escaped the output directory")
	}
}
