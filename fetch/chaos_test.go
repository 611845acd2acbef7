package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ucphhpc/gen-vm-image-go/checksum"
)

// Chaos: a cache that someone else changed, and servers that lie, trickle
// or never end. Each test reproduces a way a verified-looking file could
// be wrong, or a run could hang or fill the disk.

// entryFor is where url lives in the cache at dir.
func entryFor(t *testing.T, dir, url string) entry {
	t.Helper()
	e := newEntry(filepath.Join(dir, "downloads"), url)
	if err := os.MkdirAll(filepath.Dir(e.base), 0o755); err != nil {
		t.Fatal(err)
	}
	return e
}

func victim(t *testing.T) string {
	t.Helper()
	v := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(v, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	return v
}

func assertVictim(t *testing.T, v string) {
	t.Helper()
	if got, err := os.ReadFile(v); err != nil || string(got) != "precious" {
		t.Fatalf("the file a link pointed at was written: %q %v", got, err)
	}
}

// fetchWithin fails the test instead of hanging.
func fetchWithin(t *testing.T, d time.Duration, req Request, opts ...Option) (*Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	type out struct {
		res *Result
		err error
	}
	done := make(chan out, 1)
	go func() { r, err := Fetch(ctx, req, opts...); done <- out{r, err} }()
	select {
	case o := <-done:
		if o.err == nil {
			t.Cleanup(func() { o.res.File.Close() })
		}
		if ctx.Err() != nil {
			t.Fatalf("Fetch took longer than %v: %v", d, o.err)
		}
		return o.res, o.err
	case <-time.After(d + 5*time.Second):
		t.Fatalf("Fetch did not return within %v of its deadline (a blocking open?)", d)
		return nil, nil
	}
}

// TestLinksInTheCacheAreNotFollowed: a link planted at any name the cache
// writes (the partial download, the partial decompressed copy, the lock)
// is replaced, and the file it points at untouched; a link at a complete
// download, with metadata edited to match it, is not reused.
func TestLinksInTheCacheAreNotFollowed(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symbolic links need privileges on Windows")
	}
	data := payload(300_000)
	gz := compress(t, "gzip", data)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if strings.HasSuffix(r.URL.Path, ".gz") {
			serveData(w, r, gz, `"g"`)
			return
		}
		serveData(w, r, data, `"d"`)
	})
	for _, name := range []string{"download.partial", "image.partial", "lock", "partial.json", "json"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			u := srv.URL + "/img.raw.gz"
			e := entryFor(t, dir, u)
			v := victim(t)
			if err := os.Symlink(v, e.base+"."+name); err != nil {
				t.Fatal(err)
			}
			res, err := fetchWithin(t, 10*time.Second, Request{URLs: []string{u}, CacheDir: dir}, fast()...)
			if err != nil {
				t.Fatal(err)
			}
			checkContent(t, res, data)
			assertVictim(t, v)
		})
	}
	t.Run("download with metadata to match", func(t *testing.T) {
		dir := t.TempDir()
		u := srv.URL + "/img.raw"
		e := entryFor(t, dir, u)
		v := victim(t)
		if err := os.Symlink(v, e.download()); err != nil {
			t.Fatal(err)
		}
		precious := []byte("precious")
		m := &entryMeta{URL: u, ETag: `"d"`, Size: int64(len(precious)), SHA256: sha256hex(precious),
			Digests: digestMap{"sha256": sha256hex(precious)}}
		if err := writeJSON(e.meta(), m); err != nil {
			t.Fatal(err)
		}
		for _, req := range []Request{
			{URLs: []string{u}, CacheDir: dir, Checksum: checksum.Spec{Type: "sha256", Value: sha256hex(precious)}},
			{URLs: []string{u}, CacheDir: dir}, // the server would answer 304 to the planted ETag
		} {
			res, err := fetchWithin(t, 10*time.Second, req, fast()...)
			if err == nil {
				if b, _ := os.ReadFile(res.Path); bytes.Equal(b, precious) {
					t.Fatalf("the linked file became the input (checksum %q)", req.Checksum.Value)
				}
			}
		}
		assertVictim(t, v)
	})
	t.Run("the downloads directory", func(t *testing.T) {
		dir := t.TempDir()
		elsewhere := t.TempDir()
		if err := os.Symlink(elsewhere, filepath.Join(dir, "downloads")); err != nil {
			t.Fatal(err)
		}
		_, err := fetchWithin(t, 10*time.Second, Request{URLs: []string{srv.URL + "/img.raw"}, CacheDir: dir}, fast()...)
		var fe *Error
		if !errors.As(err, &fe) || fe.Kind != KindCache || !strings.Contains(err.Error(), "symbolic link") {
			t.Fatalf("a linked downloads directory: %v", err)
		}
		if entries, _ := os.ReadDir(elsewhere); len(entries) != 0 {
			t.Errorf("the link's target was written: %v", entries)
		}
	})
}

// TestDamagedCacheIsNotTrusted: a byte flipped in any cached file that
// becomes an image is noticed before use; the file is downloaded again.
func TestDamagedCacheIsNotTrusted(t *testing.T) {
	data := payload(600_000)
	gz := compress(t, "gzip", data)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if strings.HasSuffix(r.URL.Path, ".gz") {
			serveData(w, r, gz, `"g"`)
			return
		}
		serveData(w, r, data, `"d"`)
	})
	flipAt := func(t *testing.T, name string, at int64) {
		t.Helper()
		f, err := os.OpenFile(name, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, 1)
		f.ReadAt(b, at)
		b[0] ^= 0x40
		if _, err := f.WriteAt(b, at); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		url      string
		checksum bool
		damage   func(e entry) string // the file it damaged
	}{
		{"the decompressed copy, with a checksum", "/img.raw.gz", true, func(e entry) string { return e.image() }},
		{"the decompressed copy, without", "/img.raw.gz", false, func(e entry) string { return e.image() }},
		{"the download, with a checksum", "/img.raw", true, func(e entry) string { return e.download() }},
		{"the download, without (a 304)", "/img.raw", false, func(e entry) string { return e.download() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			u := srv.URL + tt.url
			req := Request{URLs: []string{u}, CacheDir: dir}
			if tt.checksum {
				published := data
				if strings.HasSuffix(tt.url, ".gz") {
					published = gz
				}
				req.Checksum = sumOf(published)
			}
			res := fetchOK(t, req, fast()...)
			res.File.Close()
			flipAt(t, tt.damage(entryFor(t, dir, u)), 1000)
			res = fetchOK(t, req, fast()...)
			checkContent(t, res, data)
			if res.CacheHit {
				t.Fatalf("a damaged cache was a hit: %q", res.Messages)
			}
			if !hasMessage(res, "damaged") {
				t.Errorf("no message says the copy was damaged: %q", res.Messages)
			}
			// And the copy made again is a hit next time.
			res.File.Close()
			if res = fetchOK(t, req, fast()...); !res.CacheHit {
				t.Errorf("third fetch is not a hit: %q", res.Messages)
			}
		})
	}
	t.Run("the partial download, inside the saved range", func(t *testing.T) {
		big := payload(3 << 20)
		ctx, cancel := context.WithCancel(context.Background())
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
			if n == 1 {
				w.Header().Set("ETag", `"i"`)
				w.Header().Set("Content-Length", strconv.Itoa(len(big)))
				w.Write(big[:1<<20])
				w.(http.Flusher).Flush()
				<-r.Context().Done()
				return
			}
			serveData(w, r, big, `"i"`)
		})
		dir := t.TempDir()
		u := srv.URL + "/big.raw"
		req := Request{URLs: []string{u}, CacheDir: dir}
		_, err := Fetch(ctx, req, fast(WithProgress(func(p Progress) {
			if p.Done >= 1<<20 {
				cancel()
			}
		}))...)
		if !errors.Is(err, ErrInterrupted) {
			t.Fatalf("error %v", err)
		}
		flipAt(t, entryFor(t, dir, u).partial(), 4096)
		res := fetchOK(t, req, fast()...) // no checksum: only the saved digest can tell
		checkContent(t, res, big)
		if !hasMessage(res, "no longer have the sha256 saved with them") {
			t.Errorf("%q", res.Messages)
		}
	})
}

// TestFIFOsInTheCacheDoNotHang: a FIFO at any metadata name is refused
// without blocking the open.
func TestFIFOsInTheCacheDoNotHang(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no FIFOs")
	}
	data := payload(100_000)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) { serveData(w, r, data, `"f"`) })
	for _, name := range []string{"json", "partial.json", "lock", "download", "download.partial"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			u := srv.URL + "/f.img"
			e := entryFor(t, dir, u)
			if err := mkfifo(e.base + "." + name); err != nil {
				t.Skip(err)
			}
			if name == "download" {
				writeJSON(e.meta(), &entryMeta{URL: u, ETag: `"f"`, Size: int64(len(data)), SHA256: sha256hex(data)})
			}
			res, err := fetchWithin(t, 10*time.Second, Request{URLs: []string{u}, CacheDir: dir, Checksum: sumOf(data)}, fast()...)
			if err != nil {
				t.Fatal(err)
			}
			checkContent(t, res, data)
		})
	}
}

// TestSplicedDownloadsAreNotKept: a resume is taken only from the same
// version of the file; a server that changes the file between a drop and
// the resume and answers the Range anyway gives the new file whole, never
// half of each.
func TestSplicedDownloadsAreNotKept(t *testing.T) {
	v1, v2 := payload(1<<20), bytes.Repeat([]byte{0x77}, 1<<20)
	v2Longer := bytes.Repeat([]byte{0x66}, 1<<20+4096)
	// serveRange answers any Range with 206, with the headers given.
	serveRange := func(w http.ResponseWriter, r *http.Request, data []byte, headers map[string]string) {
		for k, v := range headers {
			w.Header().Set(k, v)
		}
		start := 0
		if rg := r.Header.Get("Range"); rg != "" {
			fmt.Sscanf(rg, "bytes=%d-", &start)
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(data)-1, len(data)))
			w.Header().Set("Content-Length", strconv.Itoa(len(data)-start))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		}
		w.Write(data[start:])
	}
	tests := []struct {
		name     string
		first    map[string]string // headers of v1, dropped half way
		then     []byte            // the new version
		headers  map[string]string // its headers
		checksum bool              // of the new version
		want     string            // a message
	}{
		{"206 without an ETag", map[string]string{"ETag": `"a"`}, v2, nil, false, `the ETag "" instead of "\"a\""`},
		{"206 with another ETag", map[string]string{"ETag": `"a"`}, v2, map[string]string{"ETag": `"b"`}, false, "instead of"},
		{"same ETag, another length", map[string]string{"ETag": `"a"`}, v2Longer, map[string]string{"ETag": `"a"`}, false, "a length of"},
		{"same ETag, same length, checksum of the new one", map[string]string{"ETag": `"a"`}, v2, map[string]string{"ETag": `"a"`}, true, "downloading all of it again"},
		{"Last-Modified changed", map[string]string{"Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT"}, v2, map[string]string{"Last-Modified": "Tue, 02 Jan 2024 00:00:00 GMT"}, false, "the Last-Modified"},
		{"weak ETag only", map[string]string{"ETag": `W/"a"`}, v2, map[string]string{"ETag": `W/"a"`}, false, "cannot be resumed safely"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var switched atomic.Bool
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 1 {
					for k, v := range tt.first {
						w.Header().Set(k, v)
					}
					dropAfter(t, w, v1, len(v1)/2, "")
					switched.Store(true)
					return
				}
				serveRange(w, r, tt.then, tt.headers)
			})
			req := Request{URLs: []string{srv.URL + "/s.img"}, CacheDir: t.TempDir()}
			if tt.checksum {
				req.Checksum = sumOf(tt.then)
			}
			res := fetchOK(t, req, fast()...)
			checkContent(t, res, tt.then)
			if !hasMessage(res, tt.want) {
				t.Errorf("no message %q in %q", tt.want, res.Messages)
			}
		})
	}
}

// TestDownloadBounds: an endless body, a body larger than the limit, a
// trickle, and redirects that must not be followed all end, quickly, and
// leave no partial file of the endless kind.
func TestDownloadBounds(t *testing.T) {
	t.Run("endless body", func(t *testing.T) {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
			chunk := bytes.Repeat([]byte{0xab}, 64<<10)
			for r.Context().Err() == nil {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		})
		dir := t.TempDir()
		_, err := fetchWithin(t, 20*time.Second, Request{URLs: []string{srv.URL + "/endless"}, CacheDir: dir}, fast(WithMaxSize(4<<20), WithMinRate(0, 0))...)
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "--max-download-size") {
			t.Fatalf("error %v", err)
		}
		if got := cacheFiles(t, dir); len(got) != 0 {
			t.Errorf("cache holds %v", got)
		}
		if n, _ := srv.requests(); n != 1 {
			t.Errorf("%d requests: a download over the limit is not retried", n)
		}
	})
	t.Run("Content-Length above the limit", func(t *testing.T) {
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
			w.Header().Set("Content-Length", strconv.Itoa(8<<20))
			w.WriteHeader(http.StatusOK)
		})
		_, err := fetchWithin(t, 10*time.Second, Request{URLs: []string{srv.URL + "/big"}, CacheDir: t.TempDir()}, fast(WithMaxSize(4<<20), WithMinRate(0, 0))...)
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "8388608 bytes") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("trickle", func(t *testing.T) {
		data := payload(1 << 20)
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			for i := 0; i < len(data) && r.Context().Err() == nil; i += 10 {
				w.Write(data[i : i+10])
				w.(http.Flusher).Flush()
				time.Sleep(10 * time.Millisecond)
			}
		})
		_, err := fetchWithin(t, 30*time.Second, Request{URLs: []string{srv.URL + "/trickle"}, CacheDir: t.TempDir()},
			fast(WithRetries(1, time.Millisecond), WithMaxSize(0), WithMinRate(100<<10, 300*time.Millisecond))...)
		if !errors.Is(err, ErrTooSlow) || !strings.Contains(err.Error(), "--min-download-rate") || !strings.Contains(err.Error(), "gave up after 2 attempts") {
			t.Fatalf("error %v", err)
		}
	})
	redirect := func(to func(r *http.Request) string) *server {
		return newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
			http.Redirect(w, r, to(r), http.StatusFound)
		})
	}
	for _, tt := range []struct {
		name     string
		target   func(self string) func(r *http.Request) string
		want     string
		requests int // those of one attempt: a refused redirect is not retried
	}{
		{"loop", func(self string) func(*http.Request) string {
			return func(r *http.Request) string {
				if r.URL.Path == "/a" {
					return "/b"
				}
				return "/a"
			}
		}, "a redirect loop", 2},
		{"to a file", func(string) func(*http.Request) string {
			return func(*http.Request) string { return "file:///etc/passwd" }
		}, "the file scheme is not followed", 1},
		{"endless chain", func(string) func(*http.Request) string {
			return func(r *http.Request) string { return r.URL.Path + "x" }
		}, "more than 10 redirects", 10},
	} {
		t.Run("redirect "+tt.name, func(t *testing.T) {
			var srv *server
			srv = redirect(func(r *http.Request) string { return tt.target(srv.URL)(r) })
			_, err := fetchWithin(t, 10*time.Second, Request{URLs: []string{srv.URL + "/a"}, CacheDir: t.TempDir()}, fast()...)
			var re *RedirectError
			if !errors.As(err, &re) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v", err)
			}
			if n, _ := srv.requests(); n != tt.requests {
				t.Errorf("%d requests, want %d: a refused redirect is retried", n, tt.requests)
			}
		})
	}
	t.Run("redirect to another host", func(t *testing.T) {
		data := payload(10_000)
		target := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) { serveData(w, r, data, "") })
		srv := redirect(func(*http.Request) string { return target.URL + "/real.img" })
		res := fetchOK(t, Request{URLs: []string{srv.URL + "/img"}, CacheDir: t.TempDir()}, fast()...)
		checkContent(t, res, data)
		if !hasMessage(res, "redirects to another host or scheme: "+target.URL+"/real.img") {
			t.Errorf("%q", res.Messages)
		}
	})
}

// TestNoLockFilesLeft: the lock files that keep two processes apart go
// when the work is done, whether it succeeded or not.
func TestNoLockFilesLeft(t *testing.T) {
	data := payload(200_000)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if strings.HasSuffix(r.URL.Path, "/missing") {
			http.NotFound(w, r)
			return
		}
		serveData(w, r, data, `"l"`)
	})
	dir := t.TempDir()
	res := fetchOK(t, Request{URLs: []string{srv.URL + "/ok.img"}, CacheDir: dir}, fast()...)
	res.File.Close()
	if _, err := Fetch(context.Background(), Request{URLs: []string{srv.URL + "/missing"}, CacheDir: dir}, fast()...); err == nil {
		t.Fatal("a 404 succeeded")
	}
	if _, err := Fetch(context.Background(), Request{URLs: []string{srv.URL + "/ok.img"}, CacheDir: dir, Checksum: checksum.Spec{Type: "sha256", Value: strings.Repeat("00", 32)}}, fast()...); err == nil {
		t.Fatal("a wrong checksum succeeded")
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "downloads"))
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".lock") {
			t.Errorf("a lock file is left: %s", e.Name())
		}
	}
}

// TestNoHomeIsNotCreated: without a home directory there is no default
// cache, and the error says what to do instead of creating one.
func TestNoHomeIsNotCreated(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("HOME decides the cache directory on Linux")
	}
	home := filepath.Join(t.TempDir(), "nobody")
	t.Setenv("HOME", home)
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv(CacheDirEnv, "")
	_, err := Fetch(context.Background(), Request{URLs: []string{"http://127.0.0.1:1/x"}}, fast()...)
	if err == nil || !strings.Contains(err.Error(), "--cache-dir") || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("error %v", err)
	}
	if _, err := os.Stat(home); err == nil {
		t.Error("the missing home directory was created")
	}
}

// TestHTMLIsNotAnImage: a URL that answers with an HTML page (a directory
// listing, a login page) fails at once, and leaves nothing in the cache.
func TestHTMLIsNotAnImage(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte("<html><body>Index of /images/</body></html>"))
	})
	dir := t.TempDir()
	_, err := Fetch(context.Background(), Request{URLs: []string{srv.URL + "/images/"}, CacheDir: dir}, fast()...)
	var fe *Error
	if !errors.As(err, &fe) || fe.Kind != KindNotImage || !strings.Contains(err.Error(), "HTML page") {
		t.Fatalf("error %v", err)
	}
	if n, _ := srv.requests(); n != 1 {
		t.Errorf("%d requests: an HTML page is not retried", n)
	}
	if got := cacheFiles(t, dir); len(got) != 0 {
		t.Errorf("cache holds %v", got)
	}
}
