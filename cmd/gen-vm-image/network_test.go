package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ulikunitz/xz"

	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// gviEnv runs the binary in dir with args and extra environment variables.
func gviEnv(t *testing.T, dir string, env []string, args ...string) runResult {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return runResult{out.String(), errOut.String(), code}
}

// imageServer serves test.qcow2 (and an xz copy, and a SHA256SUMS listing
// both) on 127.0.0.1 the way a static web server does, counting requests
// per path; the first request for /flaky.qcow2 is cut off half way.
type imageServer struct {
	*httptest.Server
	mu    sync.Mutex
	count map[string]int
}

func newImageServer(t *testing.T, files map[string][]byte) *imageServer {
	s := &imageServer{count: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.count[r.URL.Path]++
		n := s.count[r.URL.Path]
		s.mu.Unlock()
		data, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", `"`+sha256hex(data)[:16]+`"`)
		if r.URL.Path == "/flaky.qcow2" && n == 1 {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data[:len(data)/2])
			w.(http.Flusher).Flush()
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		http.ServeContent(w, r, r.URL.Path, time.Unix(1.7e9, 0), bytes.NewReader(data))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *imageServer) requests(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[path]
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestSingleFromURL(t *testing.T) {
	in := testQcow2(t)
	data, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	var xzBuf bytes.Buffer
	xw, _ := xz.NewWriter(&xzBuf)
	xw.Write(data)
	xw.Close()
	sums := "# checksums\n" + sha256hex(data) + "  test.qcow2\nSHA256 (test.qcow2.xz) = " + sha256hex(xzBuf.Bytes()) + "\n"
	srv := newImageServer(t, map[string][]byte{
		"/test.qcow2": data, "/flaky.qcow2": data, "/test.qcow2.xz": xzBuf.Bytes(), "/SHA256SUMS": []byte(sums),
		"/limited.qcow2": data,
	})
	cache := t.TempDir()
	env := []string{"GVI_CACHE_DIR=" + cache}
	u := srv.URL + "/test.qcow2"

	tests := []struct {
		name string
		args []string
		code int
		msg  string // in the response
		verb string // in the verbose messages
	}{
		{"no checksum", []string{"-i", u}, 0, "", "Downloaded " + u},
		{"no checksum: not called verified", []string{"-i", u}, 0, "", "not verified: no checksum was given"},
		{"no checksum, again: the server confirms it is unchanged", []string{"-i", u}, 0, "", "the server confirms " + u + " is unchanged"},
		{"sha512", []string{"-i", u, "-ict", "sha512", "-ic", testQcow2Sha512}, 0, "", "Cache hit: the cached copy of " + u},
		{"sha512 of the first 1000 bytes", []string{"-i", u, "-ict", "sha512", "-ic", testQcow2Sha512First, "-icrb", "1000"}, 0, "", "Cache hit"},
		{"dropped half way, resumed", []string{"-i", srv.URL + "/flaky.qcow2", "-ict", "sha512", "-ic", testQcow2Sha512}, 0, "", "Resumed the download of " + srv.URL + "/flaky.qcow2 at byte"},
		{"mismatch", []string{"-i", srv.URL + "/flaky.qcow2", "-ict", "sha512", "-ic", testQcow2Sha512First}, 6, testQcow2Sha512First, ""},
		{"checksum file", []string{"-i", u, "--input-checksum-file", srv.URL + "/SHA256SUMS"}, 0, "", "lists test.qcow2 with the sha256 checksum " + sha256hex(data)},
		{"xz, checksum of the published file", []string{"-i", srv.URL + "/test.qcow2.xz", "--input-checksum-file", srv.URL + "/SHA256SUMS"}, 0, "", "Decompressed the xz data"},
		{"404", []string{"-i", srv.URL + "/nope.qcow2"}, 10, "Failed to download " + srv.URL + "/nope.qcow2: the server answered 404 Not Found", ""},
		{"refused", []string{"-i", "http://127.0.0.1:1/x.qcow2"}, 10, "connection refused", ""},
		{"signature without key", []string{"-i", u, "--input-checksum-file", srv.URL + "/SHA256SUMS", "--input-checksum-signature", srv.URL + "/SHA256SUMS.gpg"}, 4, "a key to verify", ""},
		{"larger than --max-download-size", []string{"-i", srv.URL + "/limited.qcow2", "--max-download-size", "1K"}, 10, "more than the limit of 1 KiB (--max-download-size)", ""},
		{"within --max-download-size, with no minimum rate", []string{"-i", srv.URL + "/limited.qcow2", "--max-download-size", "1G", "--min-download-rate", "0"}, 0, "", "Downloaded " + srv.URL + "/limited.qcow2"},
		{"a --min-download-rate that is no size", []string{"-i", u, "--min-download-rate", "fast"}, 5, `Invalid value "fast" for --min-download-rate`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"single", "img", "1G", "-v"}, tc.args...)
			r := gviEnv(t, dir, env, args...)
			resp := r.result(t)
			if r.code != tc.code || !strings.Contains(resp.Response, tc.msg) {
				t.Fatalf("exit %d %+v; want %d with %q", r.code, resp, tc.code, tc.msg)
			}
			if tc.verb != "" && !strings.Contains(strings.Join(resp.VerboseMessages, "\n"), tc.verb) {
				t.Errorf("verbose messages lack %q:\n%s", tc.verb, strings.Join(resp.VerboseMessages, "\n"))
			}
			out := filepath.Join(dir, "generated-images", "img.qcow2")
			if tc.code != 0 {
				if entries, _ := os.ReadDir(filepath.Join(dir, "generated-images")); len(entries) != 0 {
					t.Fatalf("a failed download left %v", entries)
				}
				return
			}
			oracle.AssertQcow2(t, out, 1<<30)
			oracle.AssertSame(t, in, "qcow2", out, "qcow2")
		})
	}
	if n := srv.requests("/test.qcow2"); n != 3 { // the first download, two revalidations; checksums hit the cache
		t.Errorf("%d requests for test.qcow2, want 3", n)
	}
	// The cache directory is where GVI_CACHE_DIR says; --cache-dir wins.
	if entries, _ := filepath.Glob(filepath.Join(cache, "downloads", "*-test.qcow2.download")); len(entries) != 1 {
		t.Errorf("cache: %v", entries)
	}
	other := t.TempDir()
	dir := t.TempDir()
	r := gviEnv(t, dir, env, "single", "img", "1G", "-i", u, "--cache-dir", other)
	if r.code != 0 {
		t.Fatalf("--cache-dir: exit %d %s", r.code, r.stderr)
	}
	if entries, _ := filepath.Glob(filepath.Join(other, "downloads", "*-test.qcow2.download")); len(entries) != 1 {
		t.Errorf("--cache-dir: %v", entries)
	}
}

func TestMultipleFromURLs(t *testing.T) {
	in := testQcow2(t)
	data, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	srv := newImageServer(t, map[string][]byte{"/mirror2/test.qcow2": data, "/SHA256SUMS": []byte(sha256hex(data) + " *test.qcow2\n")})
	dir := t.TempDir()
	archFile := filepath.Join(dir, "arch.yml")
	os.WriteFile(archFile, []byte(`owner: o
images:
  a:
    name: mirrored
    size: 1G
    input:
      url:
        - `+srv.URL+`/mirror1/test.qcow2
        - `+srv.URL+`/mirror2/test.qcow2
      checksum:
        file: `+srv.URL+`/SHA256SUMS
  b:
    name: literal
    size: 1G
    format: raw
    input:
      url: `+srv.URL+`/mirror2/test.qcow2
      checksum: {type: sha512, value: `+testQcow2Sha512+`}
`), 0o644)
	// One job, so one fetcher takes the inputs in the file's order: a's
	// mirrors first (the 404, then the download), then b's cache hit. With
	// two, b may download first and a find the cache before any mirror.
	r := gviEnv(t, dir, nil, "multiple", archFile, "--cache-dir", filepath.Join(dir, "cache"), "-v", "-j", "1")
	resp := r.result(t)
	if r.code != 0 {
		t.Fatalf("exit %d %+v", r.code, resp)
	}
	msgs := strings.Join(resp.VerboseMessages, "\n")
	if !strings.Contains(msgs, "404 Not Found; trying the next mirror: "+srv.URL+"/mirror2/test.qcow2") || !strings.Contains(msgs, "Cache hit") {
		t.Errorf("verbose messages:\n%s", msgs)
	}
	oracle.AssertQcow2(t, filepath.Join(dir, "generated-images", "mirrored.qcow2"), 1<<30)
	oracle.AssertSame(t, in, "qcow2", filepath.Join(dir, "generated-images", "literal.raw"), "raw")
	if n := srv.requests("/mirror2/test.qcow2"); n != 1 {
		t.Errorf("%d downloads of one file for two images", n)
	}
}

func TestNetworkHelp(t *testing.T) {
	dir := t.TempDir()
	r := gvi(t, dir, "single", "-h")
	for _, want := range []string{"--input-checksum-file URL_OR_PATH", "--input-checksum-signature URL_OR_PATH", "--input-checksum-key PATH_OR_URL", "--cache-dir DIR"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("single -h lacks %q", want)
		}
	}
	r = gvi(t, dir, "multiple", "-h")
	for _, want := range []string{"--cache-dir DIR", "url: <url> | [<url>, ...]", "signature: <url|path>"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("multiple -h lacks %q", want)
		}
	}
}
