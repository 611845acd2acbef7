package genvm

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ucphhpc/gen-vm-image-go/arch"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
	"github.com/ucphhpc/gen-vm-image-go/output"
)

// countingServer serves files, counting the GETs of each path; gate, when
// set, is waited for before a body is sent.
type countingServer struct {
	*httptest.Server
	mu   sync.Mutex
	gets map[string]int
	gate chan struct{}
}

func newCountingServer(t *testing.T, files map[string][]byte) *countingServer {
	s := &countingServer{gets: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		s.mu.Lock()
		s.gets[r.URL.Path]++
		gate := s.gate
		s.mu.Unlock()
		if gate != nil {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("ETag", `"`+hexSHA256(data)[:16]+`"`)
		http.ServeContent(w, r, r.URL.Path, time.Unix(1.7e9, 0), bytes.NewReader(data))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *countingServer) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets[path]
}

// fleetInputs are two distinct raw disks with data and holes.
func fleetInputs() (a, b []byte) {
	a = make([]byte, 3<<20)
	b = make([]byte, 5<<20)
	for i := 0; i < len(a); i += 64 << 10 {
		copy(a[i:], fmt.Sprintf("disk a, block at %d", i))
	}
	for i := 0; i < len(b); i += 96 << 10 {
		copy(b[i:], fmt.Sprintf("disk b, block at %d", i))
	}
	return a, b
}

func parseArch(t *testing.T, yml string) *arch.Architecture {
	t.Helper()
	a, err := arch.Parse([]byte(yml), "architecture.yml")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// assertNoTemp fails when a temporary file of ours is left in dir.
func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if output.IsTemp(e.Name()) {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

// TestBuildParallel: eight images at -j 4, from two URLs (one verified,
// one not) and a local file, qcow2 and raw of different sizes: each is
// right (qemu-img check and compare), each URL is downloaded once, the
// results are in the file's order, and the images that share an input
// say so.
func TestBuildParallel(t *testing.T) {
	oracle.QemuImg(t)
	a, b := fleetInputs()
	srv := newCountingServer(t, map[string][]byte{"/a.raw": a, "/b.raw": b})
	dir := t.TempDir()
	local := filepath.Join(dir, "local.raw")
	if err := os.WriteFile(local, b, 0o644); err != nil {
		t.Fatal(err)
	}
	yml := fmt.Sprintf(`owner: test
images:
  a1: {name: a1, size: 4M, input: {url: %[1]s/a.raw, checksum: {type: sha256, value: %[2]s}}}
  b1: {name: b1, size: 6M, format: raw, input: {url: %[1]s/b.raw}}
  a2: {name: a2, size: 8M, format: raw, input: {url: %[1]s/a.raw, checksum: {type: sha256, value: %[2]s}}}
  blank: {name: blank, size: 1M}
  b2: {name: b2, size: 5M, input: {url: %[1]s/b.raw}}
  l1: {name: l1, size: 6M, input: {path: %[3]s}}
  a3: {name: a3, size: 3M, input: {url: %[1]s/a.raw, checksum: {type: sha256, value: %[2]s}}}
  l2: {name: l2, size: 7M, format: raw, input: {path: %[3]s}}
`, srv.URL, hexSHA256(a), local)
	out := filepath.Join(dir, "out")
	res, err := Build(context.Background(), BuildSpec{Architecture: parseArch(t, yml), OutputDirectory: out},
		WithJobs(4), WithCacheDir(filepath.Join(dir, "cache")), WithoutSync())
	if err != nil {
		t.Fatalf("%v\n%s", err, strings.Join(res.Messages, "\n"))
	}
	wantKeys := []string{"a1", "b1", "a2", "blank", "b2", "l1", "a3", "l2"}
	if len(res.Images) != len(wantKeys) {
		t.Fatalf("%d results, want %d", len(res.Images), len(wantKeys))
	}
	inputs := map[string]string{"a": filepath.Join(dir, "a.raw"), "b": local, "l": local}
	if err := os.WriteFile(inputs["a"], a, 0o644); err != nil {
		t.Fatal(err)
	}
	for i, ir := range res.Images {
		if ir.Key != wantKeys[i] || !ir.Created || ir.Err != nil {
			t.Errorf("result %d: %s created %v err %v; want %s created", i, ir.Key, ir.Created, ir.Err, wantKeys[i])
			continue
		}
		format := strings.TrimPrefix(filepath.Ext(ir.Path), ".")
		if format == "qcow2" {
			if r, code := oracle.Check(t, ir.Path, "qcow2"); code != 0 || r.CheckErrors+r.Corruptions+r.Leaks != 0 {
				t.Errorf("qemu-img check %s: exit %d, %+v", ir.Path, code, r)
			}
		}
		if ir.Key == "blank" {
			continue
		}
		// compare reads past the shorter image's end as zeros: the
		// enlarged output must hold the input and zeros after it.
		oracle.AssertSame(t, inputs[ir.Key[:1]], "raw", ir.Path, format)
	}
	for _, p := range []string{"/a.raw", "/b.raw"} {
		if n := srv.count(p); n != 1 {
			t.Errorf("%s was requested %d times, want once", p, n)
		}
	}
	all := strings.Join(res.Messages, "\n")
	for _, want := range []string{
		"Input " + srv.URL + "/a.raw: fetched and verified once, for image a1, and read again here",
		"Input " + local + ": fetched and verified once, for image l1, and read again here",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("messages lack %q:\n%s", want, all)
		}
	}
	assertNoTemp(t, out)
}

// TestBuildFailureAmongGood: an image whose input fails its checksum fails
// alone (code 6, nothing of it left); the others are built. With
// WithFailFast the build stops at it: the code is its code, and no image
// is left half-written.
func TestBuildFailureAmongGood(t *testing.T) {
	a, _ := fleetInputs()
	dir := t.TempDir()
	in := filepath.Join(dir, "in.raw")
	if err := os.WriteFile(in, a, 0o644); err != nil {
		t.Fatal(err)
	}
	yml := fmt.Sprintf(`owner: test
images:
  good1: {name: good1, size: 4M, input: {path: %[1]s}}
  bad: {name: bad, size: 4M, input: {path: %[1]s, checksum: {type: sha256, value: %[2]s}}}
  good2: {name: good2, size: 5M, format: raw, input: {path: %[1]s}}
  good3: {name: good3, size: 2M}
`, in, strings.Repeat("0", 64))
	out := filepath.Join(dir, "out")
	res, err := Build(context.Background(), BuildSpec{Architecture: parseArch(t, yml), OutputDirectory: out}, WithJobs(3), WithoutSync())
	if CodeOf(err) != CodeChecksum {
		t.Fatalf("code %d (%v), want %d", CodeOf(err), err, CodeChecksum)
	}
	if len(res.Images) != 4 {
		t.Fatalf("%d results, want 4", len(res.Images))
	}
	for _, ir := range res.Images {
		if (ir.Err != nil) != (ir.Key == "bad") {
			t.Errorf("%s: err %v", ir.Key, ir.Err)
		}
		if _, err := os.Stat(ir.Path); (err == nil) != (ir.Key != "bad") {
			t.Errorf("%s: stat %v", ir.Key, err)
		}
	}
	if !strings.HasPrefix(res.Summary, "1 of 4 images failed") || !strings.Contains(res.Summary, "bad (return code 6)") {
		t.Errorf("summary %q", res.Summary)
	}
	assertNoTemp(t, out)

	// Fail fast: the bad image first, the others behind it.
	out = filepath.Join(dir, "fast")
	res, err = Build(context.Background(), BuildSpec{Architecture: parseArch(t, yml), OutputDirectory: out, Keys: []string{"bad", "good2"}},
		WithJobs(1), WithFailFast(), WithoutSync())
	if CodeOf(err) != CodeChecksum {
		t.Fatalf("fail fast: code %d (%v), want %d", CodeOf(err), err, CodeChecksum)
	}
	if len(res.Images) != 1 || res.Images[0].Key != "bad" {
		t.Errorf("fail fast: results %v, want only bad's", keysOf(res.Images))
	}
	// good2 is told as not started, and is not a failure of its own.
	if len(res.NotBuilt) != 1 || res.NotBuilt[0].Key != "good2" || res.NotBuilt[0].Elapsed != 0 {
		t.Errorf("fail fast: not built %v, want good2, not started", keysOf(res.NotBuilt))
	}
	if !strings.HasPrefix(res.Summary, "1 of 2 images failed") || !strings.HasSuffix(res.Summary, "; not started: good2") {
		t.Errorf("fail fast: summary %q", res.Summary)
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 0 {
		t.Errorf("fail fast left %v", entries)
	}
}

func keysOf(rs []ImageResult) []string {
	var keys []string
	for _, r := range rs {
		keys = append(keys, r.Key)
	}
	return keys
}

// TestBuildCancelled: a build interrupted while images convert and one
// waits for its download stops every job and leaves no temporary or
// partial file; the error says it was interrupted.
func TestBuildCancelled(t *testing.T) {
	a, b := fleetInputs()
	srv := newCountingServer(t, map[string][]byte{"/b.raw": b})
	srv.gate = make(chan struct{}) // the download never comes
	dir := t.TempDir()
	in := filepath.Join(dir, "in.raw")
	big := make([]byte, 64<<20)
	for i := 0; i < len(big); i += 4096 {
		big[i] = 1
	}
	copy(big, a)
	if err := os.WriteFile(in, big, 0o644); err != nil {
		t.Fatal(err)
	}
	yml := fmt.Sprintf(`owner: test
images:
  c1: {name: c1, size: 64M, input: {path: %[1]s}}
  c2: {name: c2, size: 64M, format: raw, input: {path: %[1]s}}
  dl: {name: dl, size: 8M, input: {url: %[2]s/b.raw}}
  c3: {name: c3, size: 64M, input: {path: %[1]s}}
`, in, srv.URL)
	out := filepath.Join(dir, "out")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var converting atomic.Int32
	progress := func(e Event) {
		if e.Stage == "convert" && e.Done > 8<<20 && converting.Add(1) == 1 {
			cancel()
		}
	}
	res, err := Build(ctx, BuildSpec{Architecture: parseArch(t, yml), OutputDirectory: out},
		WithJobs(2), WithProgress(progress), WithCacheDir(filepath.Join(dir, "cache")), WithoutSync())
	close(srv.gate)
	if err == nil {
		t.Fatal("an interrupted build succeeded")
	}
	if !strings.HasPrefix(res.Summary, "Interrupted with ") || !strings.Contains(res.Summary, "; stopped at work: c1, c2") {
		t.Errorf("summary %q does not say it was interrupted, with c1 and c2 at work", res.Summary)
	}
	// Every image is told once: those that ended, each stopped (not
	// failed), and those the interruption kept from starting.
	told := map[string]int{}
	for _, ir := range res.Images {
		told[ir.Key]++
		if ir.Err != nil && !ir.Stopped {
			t.Errorf("%s failed on its own: %v", ir.Key, ir.Err)
		}
	}
	for _, ir := range res.NotBuilt {
		told[ir.Key]++
	}
	for _, k := range []string{"c1", "c2", "dl", "c3"} {
		if told[k] != 1 {
			t.Errorf("%s is in the result %d times, want once (results %v, not built %v)", k, told[k], keysOf(res.Images), keysOf(res.NotBuilt))
		}
	}
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		t.Errorf("left in the output directory: %s", e.Name())
	}
	if converting.Load() == 0 {
		t.Error("no conversion started")
	}
}

// TestBuildBoundedGoroutines: sixteen images at -j 2 run on a fixed
// number of goroutines: the jobs, their conversions' few helpers, one pool
// of workers, whatever the number of images.
func TestBuildBoundedGoroutines(t *testing.T) {
	a, _ := fleetInputs()
	dir := t.TempDir()
	in := filepath.Join(dir, "in.raw")
	if err := os.WriteFile(in, a, 0o644); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("owner: test\nimages:\n")
	for i := range 16 {
		fmt.Fprintf(&b, "  i%d: {name: i%d, size: 4M, input: {path: %s}}\n", i, i, in)
	}
	base := runtime.NumGoroutine()
	var peak atomic.Int64
	progress := func(Event) {
		if n := int64(runtime.NumGoroutine()); n > peak.Load() {
			peak.Store(n)
		}
	}
	const jobs = 2
	res, err := Build(context.Background(), BuildSpec{Architecture: parseArch(t, b.String()), OutputDirectory: filepath.Join(dir, "out")},
		WithJobs(jobs), WithProgress(progress), WithoutSync())
	if err != nil {
		t.Fatalf("%v\n%s", err, strings.Join(res.Messages, "\n"))
	}
	// Per job: itself, a fetcher, a conversion's producer and map reader;
	// one pool; a few for the build.
	limit := int64(base + 4*jobs + runtime.GOMAXPROCS(0) + 4)
	if peak.Load() > limit {
		t.Errorf("%d goroutines at the peak (%d before), want at most %d", peak.Load(), base, limit)
	}
	t.Logf("%d goroutines at the peak, %d before, limit %d", peak.Load(), base, limit)
	if peak.Load() == 0 {
		t.Error("no progress was reported")
	}
}

// TestBuildKeys: KEY... builds those images only; an unknown key is code
// 5 with the key meant.
func TestBuildKeys(t *testing.T) {
	yml := `owner: test
images:
  alpha: {name: alpha, size: 1M}
  beta: {name: beta, size: 1M}
  gamma: {name: gamma, size: 1M}
`
	out := t.TempDir()
	res, err := Build(context.Background(), BuildSpec{Architecture: parseArch(t, yml), OutputDirectory: out, Keys: []string{"gamma", "alpha"}}, WithoutSync())
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(keysOf(res.Images), ","); got != "alpha,gamma" {
		t.Errorf("built %s, want alpha,gamma (the file's order)", got)
	}
	if _, err := os.Stat(filepath.Join(out, "beta.qcow2")); err == nil {
		t.Error("beta was built")
	}
	_, err = Build(context.Background(), BuildSpec{Architecture: parseArch(t, yml), OutputDirectory: out, Keys: []string{"betta"}})
	if CodeOf(err) != CodeInvalidAttribute || !strings.Contains(err.Error(), `"betta" (did you mean "beta"?)`) {
		t.Errorf("unknown key: code %d, %v", CodeOf(err), err)
	}
}

// TestWaitingHoldsNoJob: with one job, an image whose download has not
// come yet does not keep the image after it, whose input is ready, from
// being built meanwhile.
func TestWaitingHoldsNoJob(t *testing.T) {
	a, b := fleetInputs()
	srv := newCountingServer(t, map[string][]byte{"/b.raw": b})
	srv.gate = make(chan struct{})
	dir := t.TempDir()
	in := filepath.Join(dir, "in.raw")
	if err := os.WriteFile(in, a, 0o644); err != nil {
		t.Fatal(err)
	}
	yml := fmt.Sprintf(`owner: test
images:
  waits: {name: waits, size: 8M, input: {url: %s/b.raw}}
  ready: {name: ready, size: 4M, input: {path: %s}}
`, srv.URL, in)
	var once sync.Once
	readyBuilt := make(chan struct{})
	progress := func(e Event) {
		if e.Image == "ready.qcow2" && e.Stage == "done" {
			once.Do(func() { close(readyBuilt) })
		}
	}
	var gaveUp atomic.Bool
	go func() {
		select {
		case <-readyBuilt:
		case <-time.After(30 * time.Second):
			gaveUp.Store(true)
		}
		close(srv.gate)
	}()
	res, err := Build(context.Background(), BuildSpec{Architecture: parseArch(t, yml), OutputDirectory: filepath.Join(dir, "out")},
		WithJobs(1), WithProgress(progress), WithCacheDir(filepath.Join(dir, "cache")), WithoutSync())
	if err != nil {
		t.Fatalf("%v\n%s", err, strings.Join(res.Messages, "\n"))
	}
	if gaveUp.Load() {
		t.Fatal("the ready image was not built while the other waited for its download")
	}
	if got := strings.Join(keysOf(res.Images), ","); got != "waits,ready" {
		t.Errorf("results %s, want the file's order waits,ready", got)
	}
}
