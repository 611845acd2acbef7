//go:build linux

package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
	"github.com/ucphhpc/gen-vm-image-go/output"
	"github.com/ucphhpc/gen-vm-image-go/record"
)

// throttledServer serves files at about rate bytes per second, so that a
// download lasts long enough to be killed half way.
func throttledServer(t *testing.T, files map[string][]byte, rate int) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", `"`+sha256hex(data)[:16]+`"`)
		http.ServeContent(&throttled{ResponseWriter: w, rate: rate}, r, r.URL.Path, time.Unix(1.7e9, 0), bytes.NewReader(data))
	}))
	t.Cleanup(srv.Close)
	return srv
}

type throttled struct {
	http.ResponseWriter
	rate int
}

func (w *throttled) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), 64<<10)
		m, err := w.ResponseWriter.Write(p[:n])
		written += m
		if err != nil {
			return written, err
		}
		w.ResponseWriter.(http.Flusher).Flush()
		time.Sleep(time.Duration(n) * time.Second / time.Duration(w.rate))
		p = p[n:]
	}
	return written, nil
}

// killRun starts args in dir, SIGKILLs it after d (if it is still running)
// and reports whether it finished before.
func killRun(t *testing.T, dir string, d time.Duration, args ...string) bool {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		return false
	}
}

// TestSIGKILL kills `single` and `multiple` at 20 random moments each
// (downloading, decompressing, converting, checking, renaming) and checks,
// after each kill and after the next run: every file under a final name is
// a whole image that qemu-img accepts and finds equal to its input; the
// next run succeeds and leaves no temporary or partial file; an image that
// is not to be replaced is never touched.
func TestSIGKILL(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	raw, qcow := patternImage(t, dir, 16<<20, true)
	rawData, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	gz := gzipped(t, rawData)
	srv := throttledServer(t, map[string][]byte{"/img.raw.gz": gz}, 16<<20)
	url := srv.URL + "/img.raw.gz"
	cache := filepath.Join(dir, "cache")
	single := filepath.Join(dir, "single")
	multiple := filepath.Join(dir, "multiple")
	arch := filepath.Join(dir, "arch.yml")
	writeFile(t, arch, fmt.Sprintf(`owner: chaos
images:
  local:
    name: local
    size: 32M
    input: {path: %s}
  web:
    name: web
    size: 32M
    format: raw
    input:
      url: %s
      checksum: {type: sha256, value: %s}
  blank:
    name: blank
    size: 1G
`, qcow, url, sha256hex(gz)))
	// What each final name must hold: the input it was made from.
	inputs := map[string][2]string{
		"local.qcow2": {qcow, "qcow2"}, "web.raw": {raw, "raw"}, "keep.qcow2": {qcow, "qcow2"},
		"over.qcow2": {qcow, "qcow2"}, "blank.qcow2": {"", ""},
	}
	// A kept image in each directory that no run may touch.
	sentinels := map[string][]byte{}
	for _, out := range []string{single, multiple} {
		if r := gvi(t, dir, "single", "keep", "32M", "-i", qcow, "-od", out); r.code != 0 {
			t.Fatal(r.stderr)
		}
		b, _ := os.ReadFile(filepath.Join(out, "keep.qcow2"))
		sentinels[out] = b
	}
	if r := gvi(t, dir, "single", "over", "32M", "-i", qcow, "-od", single); r.code != 0 {
		t.Fatal(r.stderr)
	}

	commands := []struct {
		args    []string
		outputs []string // removed before each kill so that the run has work to do
	}{
		{[]string{"single", "local", "32M", "-i", qcow, "-od", single, "--cache-dir", cache}, []string{"local.qcow2"}},
		{[]string{"single", "web", "32M", "-i", url, "-ict", "sha256", "-ic", sha256hex(gz), "-of", "raw", "-od", single, "--cache-dir", cache}, []string{"web.raw"}},
		{[]string{"single", "over", "32M", "-i", qcow, "-od", single, "--overwrite", "--cache-dir", cache}, nil},
	}
	multi := []string{"multiple", arch, "-od", multiple, "--cache-dir", cache}

	verify := func(when string, out string) {
		t.Helper()
		{
			entries, _ := os.ReadDir(out)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".") || e.Name() == record.SumsName || e.Name() == record.ManifestName {
					continue
				}
				path := filepath.Join(out, e.Name())
				in, ok := inputs[e.Name()]
				if !ok {
					t.Fatalf("%s: an unexpected file %s", when, path)
				}
				format := formatOf(e.Name())
				if format == "qcow2" {
					if rep, code := oracle.Check(t, path, "qcow2"); code != 0 {
						t.Fatalf("%s: qemu-img check %s: exit %d %+v", when, path, code, rep)
					}
				}
				if in[0] != "" {
					if _, stderr, code := oracle.Run(t, "compare", "-f", in[1], "-F", format, in[0], path); code != 0 {
						t.Fatalf("%s: %s differs from its input %s: %s", when, path, in[0], stderr)
					}
				}
			}
			// The record never vouches for a file that is not the one it
			// says (this test removes images behind its back: those the
			// next run's record drops).
			if _, err := os.Stat(filepath.Join(out, record.SumsName)); err == nil {
				cmd := exec.Command("sha256sum", "-c", "--quiet", "--ignore-missing", record.SumsName)
				cmd.Dir = out
				if b, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("%s: sha256sum -c in %s: %v\n%s", when, out, err, b)
				}
			}
			if got, _ := os.ReadFile(filepath.Join(out, "keep.qcow2")); !bytes.Equal(got, sentinels[out]) {
				t.Fatalf("%s: an image no run was asked to replace was changed", when)
			}
		}
	}
	noOrphans := func(when string) {
		t.Helper()
		for _, d := range []string{single, multiple} {
			entries, _ := os.ReadDir(d)
			for _, e := range entries {
				if output.IsTemp(e.Name()) {
					t.Errorf("%s: an orphan in %s: %s", when, d, e.Name())
				}
			}
		}
		entries, _ := os.ReadDir(filepath.Join(cache, "downloads"))
		for _, e := range entries {
			if strings.Contains(e.Name(), ".partial") || strings.Contains(e.Name(), ".tmp-") {
				t.Errorf("%s: an orphan in the cache: %s", when, e.Name())
			}
		}
	}

	// How long each whole run takes (downloading too), to kill within it.
	spans := map[string]time.Duration{}
	for _, args := range [][]string{commands[0].args, commands[1].args, commands[2].args, multi} {
		os.RemoveAll(cache)
		start := time.Now()
		if r := gvi(t, dir, append(args, "--overwrite")...); r.code != 0 {
			t.Fatalf("%v: %s", args, r.stderr)
		}
		spans[strings.Join(args, " ")] = time.Since(start)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	finished := 0
	for i := range 40 {
		args := multi
		var outputs []string
		outDir := multiple
		if i%2 == 0 {
			c := commands[(i/2)%len(commands)]
			args, outputs, outDir = c.args, c.outputs, single
		} else {
			outputs = []string{"local.qcow2", "web.raw", "blank.qcow2"}
		}
		for _, name := range outputs {
			os.Remove(filepath.Join(outDir, name))
		}
		if i%4 == 1 || i%6 == 2 {
			os.RemoveAll(cache) // often, a download from nothing (or from a partial one)
		}
		span := spans[strings.Join(args, " ")]
		d := time.Duration(rng.Int64N(int64(span + span/10)))
		when := fmt.Sprintf("kill %d (%s, after %v)", i, args[0], d)
		if killRun(t, dir, d, args...) {
			finished++
		}
		verify(when, outDir)
		if r := gvi(t, dir, args...); r.code != 0 {
			t.Fatalf("%s: the next run failed: exit %d\n%s", when, r.code, r.stderr)
		}
		verify(when+", then the next run", outDir)
		noOrphans(when + ", then the next run")
		for _, name := range outputs {
			if _, err := os.Stat(filepath.Join(outDir, name)); err != nil {
				t.Fatalf("%s: the next run did not make %s", when, name)
			}
		}
	}
	t.Logf("%d of 40 runs finished before their kill", finished)
}

// TestSecondSignalExits: a run stuck in an open that does not return (a
// FIFO given as a checksum file, with no writer) still ends at the second
// Ctrl-C, at once.
func TestSecondSignalExits(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "SHA256SUMS")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip(err)
	}
	in := filepath.Join(dir, "in.raw")
	writeFile(t, in, strings.Repeat("x", 4096))
	cmd := exec.Command(binary, "single", "img", "1M", "-i", in, "--input-checksum-file", fifo)
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// The run blocks opening the FIFO until it is signalled; give it time
	// to get there (and to install its signal handling) even on a loaded
	// machine, where a signal that comes first kills it by default.
	select {
	case err := <-done:
		t.Fatalf("the run ended before it was signalled: %v", err)
	case <-time.After(2 * time.Second):
	}
	cmd.Process.Signal(syscall.SIGINT)
	time.Sleep(100 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
			t.Errorf("exit %v, want 130", err)
		}
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the second SIGINT did not end the run")
	}
}
