package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/crypto/blake2s"

	"github.com/ucphhpc/gen-vm-image-go/checksum"
	"github.com/ucphhpc/gen-vm-image-go/internal/filelock"
)

// payload is a test file: random data, then zeros (so that decompressed
// copies have holes to leave), then more data.
func payload(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		if i < n/3 || i >= 2*n/3 {
			b[i] = byte(r.Uint32())
		}
	}
	return b
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// server is an httptest server that counts requests and remembers their
// Range headers; handle gets the request number (1-based).
type server struct {
	*httptest.Server
	mu     sync.Mutex
	n      int
	ranges []string
}

func newServer(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, n int)) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.n++
		n := s.n
		s.ranges = append(s.ranges, r.Header.Get("Range"))
		s.mu.Unlock()
		handle(w, r, n)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() (int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n, append([]string(nil), s.ranges...)
}

// serveData serves data as a static file would: ETag, Last-Modified,
// Range, If-Range, If-None-Match (net/http's ServeContent).
func serveData(w http.ResponseWriter, r *http.Request, data []byte, etag string) {
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	http.ServeContent(w, r, "file", time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), bytes.NewReader(data))
}

// dropAfter sends the headers for all of data and its first n bytes, then
// closes the connection.
func dropAfter(t *testing.T, w http.ResponseWriter, data []byte, n int, etag string) {
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	w.Write(data[:n])
	w.(http.Flusher).Flush()
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		t.Error(err)
		return
	}
	conn.Close()
}

// fast are the options every test uses: no real waits.
func fast(extra ...Option) []Option {
	return append([]Option{WithRetries(3, time.Millisecond), WithIdleTimeout(5 * time.Second)}, extra...)
}

func fetchOK(t *testing.T, req Request, opts ...Option) *Result {
	t.Helper()
	res, err := Fetch(context.Background(), req, opts...)
	if err != nil {
		t.Fatalf("Fetch: %v\nmessages:\n%s", err, strings.Join(res.Messages, "\n"))
	}
	t.Cleanup(func() { res.File.Close() })
	return res
}

func checkContent(t *testing.T, res *Result, want []byte) {
	t.Helper()
	got, err := os.ReadFile(res.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("content of %s: %d bytes, want %d (equal prefix: %d)", res.Path, len(got), len(want), commonPrefix(got, want))
	}
	st, err := res.File.Stat()
	if err != nil || st.Size() != int64(len(want)) {
		t.Fatalf("Result.File: %v, %v", st, err)
	}
}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

func hasMessage(res *Result, sub string) bool {
	for _, m := range res.Messages {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}

// cacheFiles lists the download cache's files by suffix, lock files aside.
func cacheFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(dir, "downloads"))
	var out []string
	for _, e := range entries {
		for _, suffix := range []string{".download.partial", ".partial.json", ".image.partial", ".download", ".image", ".json", ".lock"} {
			if strings.HasSuffix(e.Name(), suffix) {
				if suffix != ".lock" {
					out = append(out, suffix)
				}
				break
			}
		}
	}
	return out
}

func blake2sHex(data []byte) string {
	s := blake2s.Sum256(data)
	return hex.EncodeToString(s[:])
}

func sumOf(data []byte) checksum.Spec { return checksum.Spec{Type: "sha256", Value: sha256hex(data)} }

func TestFetchAndCacheHit(t *testing.T) {
	data := payload(3<<20 + 123)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) { serveData(w, r, data, `"v1"`) })
	dir := t.TempDir()
	req := Request{URLs: []string{srv.URL + "/dir/image.qcow2"}, Checksum: sumOf(data), CacheDir: dir}
	var progress []Progress
	res := fetchOK(t, req, fast(WithProgress(func(p Progress) { progress = append(progress, p) }))...)
	checkContent(t, res, data)
	if res.CacheHit || res.Digest != sha256hex(data) || res.Algorithm != "sha256" || res.Size != int64(len(data)) || res.Compression != "" || res.Published != res.Path {
		t.Errorf("result %+v", res)
	}
	if !strings.HasSuffix(res.Path, "-image.qcow2.download") {
		t.Errorf("cache path %s", res.Path)
	}
	if len(progress) == 0 || progress[len(progress)-1].Done != int64(len(data)) || progress[0].Total != int64(len(data)) {
		t.Errorf("progress: %d events, last %+v", len(progress), progress[len(progress)-1])
	}
	if got := cacheFiles(t, dir); strings.Join(got, " ") != ".download .json" {
		t.Errorf("cache holds %v", got)
	}

	res2 := fetchOK(t, req, fast()...)
	checkContent(t, res2, data)
	if n, _ := srv.requests(); n != 1 || !res2.CacheHit || !hasMessage(res2, "Cache hit") {
		t.Errorf("second fetch: %d requests, hit %v, %q", n, res2.CacheHit, res2.Messages)
	}

	// Another algorithm and a read-bytes checksum verify the cached copy
	// too (it is hashed again), and a wrong digest downloads again.
	s512 := sha512.Sum512(data[:1000])
	res3 := fetchOK(t, Request{URLs: req.URLs, CacheDir: dir, Checksum: checksum.Spec{Type: "SHA-512", Value: hex.EncodeToString(s512[:]), ReadBytes: 1000}}, fast()...)
	if !res3.CacheHit {
		t.Errorf("read-bytes checksum: not a hit: %q", res3.Messages)
	}
	if n, _ := srv.requests(); n != 1 {
		t.Errorf("%d requests", n)
	}
}

func TestRevalidate(t *testing.T) {
	v1, v2 := payload(100_000), payload(100_001)
	var current atomic.Pointer[[]byte]
	current.Store(&v1)
	var etag atomic.Value
	etag.Store(`"one"`)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		serveData(w, r, *current.Load(), etag.Load().(string))
	})
	dir := t.TempDir()
	req := Request{URLs: []string{srv.URL + "/img.raw"}, CacheDir: dir}
	checkContent(t, fetchOK(t, req, fast()...), v1)

	res := fetchOK(t, req, fast()...)
	checkContent(t, res, v1)
	if !res.CacheHit || !hasMessage(res, `unchanged (ETag "one")`) {
		t.Errorf("304 not a hit: %q", res.Messages)
	}

	current.Store(&v2)
	etag.Store(`"two"`)
	res = fetchOK(t, req, fast()...)
	checkContent(t, res, v2)
	if res.CacheHit || !hasMessage(res, "new version") {
		t.Errorf("changed ETag: %+v", res.Messages)
	}
	if n, _ := srv.requests(); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}

func TestNoValidatorsDownloadsAgain(t *testing.T) {
	data := payload(50_000)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) { w.Write(data) })
	req := Request{URLs: []string{srv.URL + "/x"}, CacheDir: t.TempDir()}
	fetchOK(t, req, fast()...)
	res := fetchOK(t, req, fast()...)
	checkContent(t, res, data)
	if res.CacheHit || !hasMessage(res, "cannot be confirmed unchanged") {
		t.Errorf("%+v", res.Messages)
	}
}

func TestDropHalfWayResumes(t *testing.T) {
	data := payload(2<<20 + 77)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			dropAfter(t, w, data, len(data)/2, `"e"`)
			return
		}
		serveData(w, r, data, `"e"`)
	})
	dir := t.TempDir()
	res := fetchOK(t, Request{URLs: []string{srv.URL + "/a.qcow2"}, Checksum: sumOf(data), CacheDir: dir}, fast()...)
	checkContent(t, res, data)
	n, ranges := srv.requests()
	if n != 2 || ranges[1] != fmt.Sprintf("bytes=%d-", len(data)/2) {
		t.Errorf("requests %d, ranges %q", n, ranges)
	}
	if !hasMessage(res, fmt.Sprintf("Resumed the download of %s at byte %d", srv.URL+"/a.qcow2", len(data)/2)) || !hasMessage(res, "retrying in") {
		t.Errorf("messages %q", res.Messages)
	}
}

func TestLyingContentLength(t *testing.T) {
	data := payload(64 << 10)
	t.Run("longer than the body", func(t *testing.T) {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)+1000))
			w.Write(data)
		})
		dir := t.TempDir()
		u := srv.URL + "/liar.img"
		res, err := Fetch(context.Background(), Request{URLs: []string{u}, CacheDir: dir}, fast()...)
		var fe *Error
		if !errors.As(err, &fe) || fe.Kind != KindDownload || !errors.Is(err, ErrShortBody) || !strings.Contains(err.Error(), u) ||
			!strings.Contains(err.Error(), fmt.Sprintf("%d of %d bytes", len(data), len(data)+1000)) {
			t.Fatalf("error %v (%T)", err, err)
		}
		if res.File != nil {
			t.Error("a file for a failed download")
		}
		for _, f := range cacheFiles(t, dir) {
			if f == ".download" || f == ".json" {
				t.Errorf("cache holds %v", cacheFiles(t, dir))
			}
		}
		// The first attempt made progress; the 3 retries after it did not.
		if n, _ := srv.requests(); n != 5 {
			t.Errorf("%d requests, want 5", n)
		}
	})
	t.Run("shorter than the body", func(t *testing.T) {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)-1000))
			w.Write(data[:len(data)-1000])
			w.Write(data[len(data)-1000:]) // refused by net/http: the client sees a complete, wrong file
		})
		dir := t.TempDir()
		_, err := Fetch(context.Background(), Request{URLs: []string{srv.URL + "/liar.img"}, Checksum: sumOf(data), CacheDir: dir}, fast()...)
		if !errors.Is(err, ErrChecksumMismatch) {
			t.Fatalf("error %v", err)
		}
		if got := cacheFiles(t, dir); len(got) != 0 {
			t.Errorf("cache holds %v", got)
		}
	})
}

func TestRetryServerErrors(t *testing.T) {
	data := payload(10_000)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n <= 2 {
			http.Error(w, "busy", http.StatusInternalServerError)
			return
		}
		serveData(w, r, data, "")
	})
	res := fetchOK(t, Request{URLs: []string{srv.URL + "/x"}, Checksum: sumOf(data), CacheDir: t.TempDir()}, fast()...)
	checkContent(t, res, data)
	if n, _ := srv.requests(); n != 3 || !hasMessage(res, "500 Internal Server Error; retrying in 1ms") || !hasMessage(res, "500 Internal Server Error; retrying in 2ms") {
		t.Errorf("%d requests; %q", n, res.Messages)
	}

	// Always 503: gives up after the retries, and says so.
	srv = newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	})
	_, err := Fetch(context.Background(), Request{URLs: []string{srv.URL + "/x"}, CacheDir: t.TempDir()}, fast()...)
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 503 || !strings.Contains(err.Error(), "gave up after 4 attempts") {
		t.Errorf("error %v", err)
	}
	// 404 is not retried.
	srv = newServer(t, func(w http.ResponseWriter, r *http.Request, n int) { http.NotFound(w, r) })
	_, err = Fetch(context.Background(), Request{URLs: []string{srv.URL + "/missing.qcow2"}, CacheDir: t.TempDir()}, fast()...)
	if n, _ := srv.requests(); err == nil || n != 1 || !strings.Contains(err.Error(), "Failed to download "+srv.URL+"/missing.qcow2: the server answered 404 Not Found") {
		t.Errorf("%d requests, error %v", n, err)
	}
}

func TestServerIgnoresRange(t *testing.T) {
	data := payload(1<<20 + 5)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			dropAfter(t, w, data, 300_000, `"x"`)
			return
		}
		w.Header().Set("ETag", `"x"`)
		w.Write(data) // 200, whatever the Range says
	})
	res := fetchOK(t, Request{URLs: []string{srv.URL + "/x"}, Checksum: sumOf(data), CacheDir: t.TempDir()}, fast()...)
	checkContent(t, res, data)
	if _, ranges := srv.requests(); len(ranges) != 2 || ranges[1] != "bytes=300000-" || !hasMessage(res, "starting again from byte 0") {
		t.Errorf("ranges %q, messages %q", ranges, res.Messages)
	}
}

func TestSlowServer(t *testing.T) {
	data := payload(256 << 10)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		for off := 0; off < len(data); off += 16 << 10 {
			w.Write(data[off : off+16<<10])
			w.(http.Flusher).Flush()
			time.Sleep(2 * time.Millisecond)
		}
	})
	var events int
	res := fetchOK(t, Request{URLs: []string{srv.URL + "/slow"}, CacheDir: t.TempDir()},
		fast(WithIdleTimeout(time.Second), WithProgress(func(Progress) { events++ }))...)
	checkContent(t, res, data)
	if events < 8 {
		t.Errorf("%d progress events for a trickle of 16 chunks", events)
	}
}

func TestStalledServerResumes(t *testing.T) {
	data := payload(512 << 10)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			w.Header().Set("ETag", `"s"`)
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data[:100_000])
			w.(http.Flusher).Flush()
			select { // stall until the client gives up
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return
		}
		serveData(w, r, data, `"s"`)
	})
	res := fetchOK(t, Request{URLs: []string{srv.URL + "/stall"}, Checksum: sumOf(data), CacheDir: t.TempDir()},
		fast(WithIdleTimeout(100*time.Millisecond))...)
	checkContent(t, res, data)
	if !hasMessage(res, "no data received for 100ms after 100000 bytes") {
		t.Errorf("%q", res.Messages)
	}
	if _, ranges := srv.requests(); len(ranges) != 2 || ranges[1] != "bytes=100000-" {
		t.Errorf("ranges %q", ranges)
	}
}

// Two fetches of one URL download it once, with either kind of lock (the
// lock files are what tasks on several nodes sharing a cache use).
func TestConcurrentFetches(t *testing.T) {
	for _, mode := range []filelock.Mode{filelock.Auto, filelock.Exclusive} {
		t.Run(mode.String(), func(t *testing.T) { testConcurrentFetches(t, mode) })
	}
}

func testConcurrentFetches(t *testing.T, mode filelock.Mode) {
	data := payload(1 << 20)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		time.Sleep(200 * time.Millisecond) // long enough for the other to wait
		w.Write(data[len(data)/2:])
	})
	dir := t.TempDir()
	req := Request{URLs: []string{srv.URL + "/shared.qcow2"}, Checksum: sumOf(data), CacheDir: dir}
	var wg sync.WaitGroup
	results := make([]*Result, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() { results[i], errs[i] = Fetch(context.Background(), req, append(fast(), WithLockMode(mode))...) })
	}
	wg.Wait()
	hits, waited := 0, 0
	for i, res := range results {
		if errs[i] != nil {
			t.Fatalf("fetch %d: %v", i, errs[i])
		}
		checkContent(t, res, data)
		res.File.Close()
		if res.CacheHit {
			hits++
		}
		if hasMessage(res, "Waiting for another gen-vm-image") {
			waited++
		}
	}
	if n, _ := srv.requests(); n != 1 || hits != 1 || waited != 1 {
		t.Errorf("%d requests, %d hits, %d waited", n, hits, waited)
	}
}

func TestChecksumMismatchLeavesNothing(t *testing.T) {
	data := payload(200_000)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) { serveData(w, r, data, `"m"`) })
	dir := t.TempDir()
	wrong := strings.Repeat("ab", 32)
	res, err := Fetch(context.Background(), Request{URLs: []string{srv.URL + "/m.img"}, Checksum: checksum.Spec{Type: "sha256", Value: wrong}, CacheDir: dir}, fast()...)
	var me *MismatchError
	var fe *Error
	if !errors.As(err, &me) || !errors.As(err, &fe) || fe.Kind != KindChecksum || me.Expected != wrong || me.Actual != sha256hex(data) {
		t.Fatalf("error %v", err)
	}
	for _, want := range []string{wrong, sha256hex(data), srv.URL + "/m.img"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %s: %v", want, err)
		}
	}
	if res.File != nil || res.Path != "" {
		t.Errorf("result %+v", res)
	}
	if got := cacheFiles(t, dir); len(got) != 0 {
		t.Errorf("cache holds %v after a mismatch", got)
	}
	// A verified copy in the cache is not reused for another digest.
	fetchOK(t, Request{URLs: []string{srv.URL + "/m.img"}, Checksum: sumOf(data), CacheDir: dir}, fast()...)
	_, err = Fetch(context.Background(), Request{URLs: []string{srv.URL + "/m.img"}, Checksum: checksum.Spec{Type: "sha256", Value: wrong}, CacheDir: dir}, fast()...)
	if !errors.Is(err, ErrChecksumMismatch) {
		t.Errorf("error %v", err)
	}
}

func TestMirrors(t *testing.T) {
	data := payload(70_000)
	bad := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) { http.NotFound(w, r) })
	good := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) { serveData(w, r, data, "") })
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	dir := t.TempDir()
	urls := []string{closed.URL + "/img.qcow2", bad.URL + "/img.qcow2", good.URL + "/img.qcow2"}
	res := fetchOK(t, Request{URLs: urls, Checksum: sumOf(data), CacheDir: dir}, fast()...)
	checkContent(t, res, data)
	if res.URL != urls[2] || !hasMessage(res, "connection refused; trying the next mirror: "+urls[1]) || !hasMessage(res, "404 Not Found; trying the next mirror") {
		t.Errorf("url %s, messages %q", res.URL, res.Messages)
	}
	// The next run finds the copy from the third mirror without asking anyone.
	res = fetchOK(t, Request{URLs: urls, Checksum: sumOf(data), CacheDir: dir}, fast()...)
	if n, _ := good.requests(); !res.CacheHit || n != 1 {
		t.Errorf("hit %v, %d requests", res.CacheHit, n)
	}
	// All fail: every mirror's failure is reported.
	_, err := Fetch(context.Background(), Request{URLs: urls[:2], CacheDir: dir}, fast()...)
	if err == nil || !strings.Contains(err.Error(), "All 2 mirrors failed") || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "404") {
		t.Errorf("error %v", err)
	}
}

func TestTLS(t *testing.T) {
	data := payload(1000)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(data) }))
	defer srv.Close()
	_, err := Fetch(context.Background(), Request{URLs: []string{srv.URL + "/x"}, CacheDir: t.TempDir()}, fast()...)
	if err == nil || !strings.Contains(err.Error(), "TLS certificate not trusted") || !strings.Contains(err.Error(), srv.URL) {
		t.Errorf("untrusted certificate: %v", err)
	}
	res := fetchOK(t, Request{URLs: []string{srv.URL + "/x"}, CacheDir: t.TempDir()}, fast(WithHTTPClient(srv.Client()))...)
	checkContent(t, res, data)
}

func TestInterruptKeepsPartialAndNextRunResumes(t *testing.T) {
	data := payload(3 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			w.Header().Set("ETag", `"i"`)
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data[:1<<20])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		serveData(w, r, data, `"i"`)
	})
	dir := t.TempDir()
	req := Request{URLs: []string{srv.URL + "/big.qcow2"}, Checksum: sumOf(data), CacheDir: dir}
	_, err := Fetch(ctx, req, fast(WithProgress(func(p Progress) {
		if p.Done >= 1<<20 {
			cancel()
		}
	}))...)
	if !errors.Is(err, ErrInterrupted) || !strings.Contains(err.Error(), "bytes received are kept") {
		t.Fatalf("error %v", err)
	}
	if got := strings.Join(cacheFiles(t, dir), " "); got != ".download.partial .partial.json" {
		t.Fatalf("cache holds %s", got)
	}
	res := fetchOK(t, req, fast()...)
	checkContent(t, res, data)
	if _, ranges := srv.requests(); ranges[len(ranges)-1] != "bytes=1048576-" || !hasMessage(res, "at byte 1048576, kept from an earlier run (checked against the sha256 saved with them)") {
		t.Errorf("ranges %q, messages %q", ranges, res.Messages)
	}
	if got := strings.Join(cacheFiles(t, dir), " "); got != ".download .json" {
		t.Errorf("cache holds %s", got)
	}
}

// TestResumeChecksKeptBytes: kept bytes are taken up only when they still
// have the digest saved with them and a strong validator to resume with;
// anything else starts from byte 0 and still gives the right file.
func TestResumeChecksKeptBytes(t *testing.T) {
	data := payload(1 << 20)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) { serveData(w, r, data, `"k"`) })
	u := srv.URL + "/k.img"
	kept := 400_000
	tests := []struct {
		name  string
		bytes []byte // the partial file
		state *partialState
		want  string // a message
	}{
		{"whole", data[:kept], &partialState{URL: u, ETag: `"k"`, Total: int64(len(data)), Bytes: int64(kept), SHA256: sha256hex(data[:kept])},
			"Resuming the download of " + u + " at byte 400000"},
		{"extra bytes after the saved state are cut", data[:kept+5000], &partialState{URL: u, ETag: `"k"`, Total: int64(len(data)), Bytes: int64(kept), SHA256: sha256hex(data[:kept])},
			"at byte 400000"},
		{"a byte flipped", flip(data[:kept], 1234), &partialState{URL: u, ETag: `"k"`, Total: int64(len(data)), Bytes: int64(kept), SHA256: sha256hex(data[:kept])},
			"no longer have the sha256 saved with them"},
		{"a weak ETag", data[:kept], &partialState{URL: u, ETag: `W/"k"`, Total: int64(len(data)), Bytes: int64(kept), SHA256: sha256hex(data[:kept])},
			"no strong validator"},
		{"a date and no length", data[:kept], &partialState{URL: u, LastModified: "Tue, 02 Jan 2024 03:04:05 GMT", Total: -1, Bytes: int64(kept), SHA256: sha256hex(data[:kept])},
			"no strong validator"},
		{"no digest (an older version's state)", data[:kept], &partialState{URL: u, ETag: `"k"`, Total: int64(len(data)), Bytes: int64(kept)},
			"no record of where they came from"},
		{"no state", []byte("junk"), nil, "Discarding 4 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			e := newEntry(filepath.Join(dir, "downloads"), u)
			os.MkdirAll(filepath.Dir(e.base), 0o755)
			if err := os.WriteFile(e.partial(), tt.bytes, 0o644); err != nil {
				t.Fatal(err)
			}
			if tt.state != nil {
				if err := writeJSON(e.state(), tt.state); err != nil {
					t.Fatal(err)
				}
			}
			// Without a checksum: nothing at the end would catch a wrong byte.
			res := fetchOK(t, Request{URLs: []string{u}, CacheDir: dir}, fast()...)
			checkContent(t, res, data)
			if !hasMessage(res, tt.want) {
				t.Errorf("no message %q in %q", tt.want, res.Messages)
			}
		})
	}
}

func flip(b []byte, at int) []byte {
	c := bytes.Clone(b)
	c[at] ^= 0x01
	return c
}

func TestCompressed(t *testing.T) {
	data := payload(600_000) // small: the xz writer is slow
	bz2, err := os.ReadFile("testdata/payload.bin.bz2")
	if err != nil {
		t.Fatal(err)
	}
	bz2Data := make([]byte, 65536)
	for i := range 40000 {
		bz2Data[i] = byte((i*7 + i/256) % 251)
	}
	tests := []struct {
		kind        string
		published   []byte
		image       []byte
		dropHalfWay bool
	}{
		{"gzip", compress(t, "gzip", data), data, false},
		{"zstd", compress(t, "zstd", data), data, true},
		{"xz", compress(t, "xz", data), data, true},
		{"bzip2", bz2, bz2Data, false},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 1 && tt.dropHalfWay {
					dropAfter(t, w, tt.published, len(tt.published)/2, `"c"`)
					return
				}
				serveData(w, r, tt.published, `"c"`)
			})
			dir := t.TempDir()
			req := Request{URLs: []string{srv.URL + "/img.raw.x"}, Checksum: sumOf(tt.published), CacheDir: dir}
			res := fetchOK(t, req, fast()...)
			checkContent(t, res, tt.image)
			pub, _ := os.ReadFile(res.Published)
			if res.Compression != tt.kind || !bytes.Equal(pub, tt.published) || res.Digest != sha256hex(tt.published) || !strings.HasSuffix(res.Path, ".image") {
				t.Errorf("result %+v", res)
			}
			if got := strings.Join(cacheFiles(t, dir), " "); got != ".download .image .json" {
				t.Errorf("cache holds %s", got)
			}
			res.File.Close()
			res = fetchOK(t, req, fast()...)
			checkContent(t, res, tt.image)
			if !res.CacheHit || res.Compression != tt.kind {
				t.Errorf("second fetch %+v", res)
			}
		})
	}
	t.Run("resumed on the next run", func(t *testing.T) {
		published := compress(t, "xz", data)
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
			if n == 1 {
				dropAfter(t, w, published, len(published)/3, `"r"`)
				return
			}
			serveData(w, r, published, `"r"`)
		})
		dir := t.TempDir()
		req := Request{URLs: []string{srv.URL + "/img.xz"}, Checksum: sumOf(published), CacheDir: dir}
		if _, err := Fetch(context.Background(), req, WithRetries(0, 0)); !errors.Is(err, ErrShortBody) {
			t.Fatalf("first run: %v", err)
		}
		res := fetchOK(t, req, fast()...)
		checkContent(t, res, data)
		if !hasMessage(res, "the kept xz data was decompressed again") {
			t.Errorf("%q", res.Messages)
		}
	})
	t.Run("corrupt", func(t *testing.T) {
		published := compress(t, "gzip", data)
		published[len(published)/2] ^= 0xff
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) { serveData(w, r, published, "") })
		dir := t.TempDir()
		_, err := Fetch(context.Background(), Request{URLs: []string{srv.URL + "/bad.gz"}, CacheDir: dir}, fast()...)
		var fe *Error
		if !errors.As(err, &fe) || fe.Kind != KindDownload || !strings.Contains(err.Error(), "Failed to decompress") {
			t.Errorf("error %v", err)
		}
		if got := cacheFiles(t, dir); len(got) != 0 {
			t.Errorf("cache holds %v", got)
		}
	})
}

func compress(t *testing.T, kind string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w interface {
		Write([]byte) (int, error)
		Close() error
	}
	var err error
	switch kind {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "zstd":
		w, err = zstd.NewWriter(&buf)
	case "xz":
		w, err = xz.NewWriter(&buf)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestBadRequests(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		req  Request
		kind Kind
		msg  string
	}{
		{"no url", Request{}, KindInvalid, "no URL"},
		{"ftp", Request{URLs: []string{"ftp://example.org/x"}}, KindDownload, `unsupported URL scheme "ftp"`},
		{"unknown algorithm", Request{URLs: []string{"http://127.0.0.1:1/x"}, Checksum: checksum.Spec{Type: "sha7", Value: "00"}}, KindInvalid, "sha7"},
		{"value and file", Request{URLs: []string{"http://127.0.0.1:1/x"}, Checksum: checksum.Spec{Type: "sha256", Value: "00", File: "S"}}, KindInvalid, "give only one"},
		{"key without file", Request{URLs: []string{"http://127.0.0.1:1/x"}, Checksum: checksum.Spec{Key: "k.asc"}}, KindInvalid, "without a checksum file"},
		{"signature without key", Request{URLs: []string{"http://127.0.0.1:1/x"}, Checksum: checksum.Spec{File: "S", Signature: "S.gpg"}}, KindInvalid, "a key to verify the signature"},
		{"sums file missing", Request{URLs: []string{"http://127.0.0.1:1/x"}, Checksum: checksum.Spec{File: filepath.Join(dir, "nope")}}, KindNotFound, "Path not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.req.CacheDir == "" {
				tt.req.CacheDir = dir
			}
			_, err := Fetch(context.Background(), tt.req, fast()...)
			var fe *Error
			if !errors.As(err, &fe) || fe.Kind != tt.kind || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %v (kind %v), want %v with %q", err, fe, tt.kind, tt.msg)
			}
		})
	}
	// A cache directory that cannot be made.
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	_, err := Fetch(context.Background(), Request{URLs: []string{"http://127.0.0.1:1/x"}, CacheDir: file}, fast()...)
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindCache {
		t.Errorf("cache in a file: %v", err)
	}
}

func TestDefaultCacheDir(t *testing.T) {
	t.Setenv(CacheDirEnv, "/somewhere/else")
	if d, _ := DefaultCacheDir(); d != "/somewhere/else" {
		t.Errorf("%s", d)
	}
	if runtime.GOOS != "linux" {
		return
	}
	t.Setenv(CacheDirEnv, "")
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	if d, _ := DefaultCacheDir(); d != "/xdg/gen-vm-image" {
		t.Errorf("%s", d)
	}
}
