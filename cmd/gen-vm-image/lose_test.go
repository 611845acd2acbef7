//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ucphhpc/gen-vm-image-go/internal/registrytest"
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
			// Signal as soon as the conversion has begun: its temporary
			// file exists.
			err := interruptWhen(t, cmd, &stderr, func() bool { return hasTempFile(out) }, "the conversion", 50*time.Millisecond, sig)
			want := 128 + int(sig)
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != want {
				t.Fatalf("exit %v; want %d (the run was interrupted and cleaned up)\n%s", err, want, stderr.String())
			}
			var resp response
			if err := json.Unmarshal(stderr.Bytes(), &resp); err != nil || resp.ReturnCode != want || !strings.HasPrefix(resp.Response, "Interrupted") {
				t.Errorf("the result does not say it was interrupted, with return_code %d:\n%s", want, stderr.String())
			}
			assertNoTempFiles(t, out)
			assertUntouched(t, target, before)
			t.Logf("exit %d: %s", ee.ExitCode(), strings.TrimSpace(stderr.String()))
		})
	}
}

// trickleServer serves files; while slow is set, it sends /big.raw (when
// asked for all of it) a little at a time, so that a download can be
// interrupted half way. It counts Range requests: resumed downloads.
type trickleServer struct {
	*httptest.Server
	slow   atomic.Bool
	ranges atomic.Int32
}

func newTrickleServer(t *testing.T, files map[string][]byte) *trickleServer {
	s := &trickleServer{}
	s.slow.Store(true)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", `"v1-`+strconv.Itoa(len(data))+`"`)
		if r.Header.Get("Range") != "" {
			s.ranges.Add(1)
		}
		if r.URL.Path == "/big.raw" && s.slow.Load() && r.Header.Get("Range") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			for off := 0; off < len(data); off += 256 << 10 {
				if _, err := w.Write(data[off:min(off+256<<10, len(data))]); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
			return
		}
		http.ServeContent(w, r, r.URL.Path, time.Unix(1.7e9, 0), bytes.NewReader(data))
	}))
	t.Cleanup(s.Close)
	return s
}

// snapshot maps every file under dir to its content.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			files[path] = b
		}
		return nil
	})
	return files
}

// TestSignalDuringDownload interrupts `single -i URL --overwrite` while the
// input downloads, with SIGINT and SIGTERM: the run fails saying so, no
// temporary file is left in the output directory, the existing image and
// the cached download of another URL are untouched, and the cache holds
// the received bytes only under partial names (never as a complete
// download). The next run resumes from them and makes the right image.
func TestSignalDuringDownload(t *testing.T) {
	big := make([]byte, 32<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(rng.Uint32()) | 1 // never all zeros, never a format's magic
	}
	copy(big, "not an image header")
	other := bytes.Repeat([]byte("\x00\xa5other image "), 1<<16) // binary: a disk, not a text file
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			srv := newTrickleServer(t, map[string][]byte{"/big.raw": big, "/other.raw": other})
			dir := t.TempDir()
			cache := filepath.Join(dir, "cache")
			if r := gvi(t, dir, "single", "other", "1M", "-of", "raw", "-i", srv.URL+"/other.raw", "--cache-dir", cache); r.code != 0 {
				t.Fatalf("downloading the other image: %s", r.stderr)
			}
			cached := snapshot(t, cache)
			if r := gvi(t, dir, "single", "keep", "1M", "-of", "raw"); r.code != 0 {
				t.Fatal(r.stderr)
			}
			out := filepath.Join(dir, "generated-images")
			target := filepath.Join(out, "keep.raw")
			before, _ := os.ReadFile(target)

			cmd := exec.Command(binary, "single", "keep", "32M", "-of", "raw", "-i", srv.URL+"/big.raw", "--cache-dir", cache, "--overwrite")
			cmd.Dir = dir
			var stderr bytes.Buffer
			err := interruptWhen(t, cmd, &stderr, func() bool { return partialStarted(cache) }, "the download", 0, sig)
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 128+int(sig) || !strings.Contains(stderr.String(), "Interrupted") {
				t.Fatalf("exit %v; want %d and a result that says it was interrupted\n%s", err, 128+int(sig), stderr.String())
			}
			t.Logf("exit %d: %s", ee.ExitCode(), strings.TrimSpace(stderr.String()))
			assertNoTempFiles(t, out)
			assertUntouched(t, target, before)
			after := snapshot(t, cache)
			for path, b := range cached {
				if !bytes.Equal(after[path], b) {
					t.Errorf("the cached %s was changed or removed", path)
				}
			}
			for path := range after {
				if _, old := cached[path]; !old && !strings.HasSuffix(path, ".partial") && !strings.HasSuffix(path, ".partial.json") && !strings.HasSuffix(path, ".lock") {
					t.Errorf("the interrupted download left %s, which is not a partial file", path)
				}
			}

			// The next run resumes and makes the right image.
			srv.slow.Store(false)
			if r := gvi(t, dir, "single", "keep", "32M", "-of", "raw", "-i", srv.URL+"/big.raw", "--cache-dir", cache, "--overwrite"); r.code != 0 {
				t.Fatalf("the run after the interruption: exit %d\n%s", r.code, r.stderr)
			}
			got, _ := os.ReadFile(target)
			if !bytes.Equal(got, big) {
				t.Fatal("the image made after the interruption differs from the download")
			}
			if srv.ranges.Load() == 0 {
				t.Error("the second run downloaded everything again instead of resuming")
			}
		})
	}
}

// partialStarted reports whether a partial download with data exists
// under the cache directory.
func partialStarted(cache string) bool {
	found := false
	filepath.WalkDir(cache, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".partial") {
			if fi, err := d.Info(); err == nil && fi.Size() > 0 {
				found = true
			}
		}
		return nil
	})
	return found
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
	if entries := imageFiles(t, mnt); len(entries) != 1 {
		t.Errorf("the read-only directory holds %v", entries)
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

// TestOverwriteDoesNotWriteThroughSymlinks: an output path that is a
// symbolic link (planted by someone who can write the output directory) is
// kept without --overwrite and replaced, not written through, with it; the
// file it points at is never touched.
func TestOverwriteDoesNotWriteThroughSymlinks(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "generated-images")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(out, "img.qcow2")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	if r := gvi(t, dir, "single", "img", "1M"); r.code != 0 {
		t.Fatalf("without --overwrite: exit %d %s", r.code, r.stderr)
	}
	assertUntouched(t, victim, []byte("precious"))
	if r := gvi(t, dir, "single", "img", "1M", "--overwrite"); r.code != 0 {
		t.Fatalf("with --overwrite: exit %d %s", r.code, r.stderr)
	}
	assertUntouched(t, victim, []byte("precious"))
	if fi, err := os.Lstat(link); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("the link was not replaced by the image: %v %v", fi, err)
	}
	assertNoTempFiles(t, out)
}

// interruptWhen starts cmd, waits (20 s at most) until ready reports that
// the work has begun, lets it run for settle, sends sig and returns what
// Wait returns.
func interruptWhen(t *testing.T, cmd *exec.Cmd, stderr *bytes.Buffer, ready func() bool, what string, settle time.Duration, sig os.Signal) error {
	t.Helper()
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !ready() {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("%s never started\n%s", what, stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(settle)
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return cmd.Wait()
}

// TestPushInterrupted: SIGINT during a push's upload exits 130, and the
// result says once that it was interrupted and by what (the registry
// client's error carries the signal's cause already).
func TestPushInterrupted(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Config{})
	dir := t.TempDir()
	in := filepath.Join(dir, "big.raw")
	slowInput(t, in, 1<<30)
	cmd := exec.Command(binary, "push", in, reg.Addr+"/vm/big:1", "--insecure")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), registryEnv(t)...)
	var stderr bytes.Buffer
	started := time.Now()
	err := interruptWhen(t, cmd, &stderr, func() bool { return time.Since(started) > 300*time.Millisecond }, "the push", 0, syscall.SIGINT)
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 130 {
		t.Fatalf("exit %v; want 130\n%s", err, stderr.String())
	}
	var resp response
	if err := json.Unmarshal(stderr.Bytes(), &resp); err != nil || !strings.HasPrefix(resp.Response, "Interrupted") {
		t.Fatalf("the result does not say it was interrupted:\n%s", stderr.String())
	}
	if n := strings.Count(resp.Response, "interrupted by SIGINT"); n != 1 {
		t.Errorf("the result says %d times that SIGINT interrupted it: %s", n, resp.Response)
	}
	t.Log(resp.Response)
}
