package genvm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
	"github.com/ucphhpc/gen-vm-image-go/record"
)

// fleetImage is one image of a test architecture.
type fleetImage struct {
	key, name, size, format, input string // input: a path, a URL or ""
	options                        string // format_options, as YAML flow
}

// writeArch writes an architecture of images, in their order, and loads it.
func writeArch(t testing.TB, dir string, images []fleetImage) BuildSpec {
	t.Helper()
	var b strings.Builder
	b.WriteString("owner: test\nimages:\n")
	for _, im := range images {
		fmt.Fprintf(&b, "  %s:\n    name: %s\n    size: %s\n    format: %s\n", im.key, im.name, im.size, im.format)
		if im.options != "" {
			fmt.Fprintf(&b, "    format_options: %s\n", im.options)
		}
		switch {
		case strings.HasPrefix(im.input, "http"):
			fmt.Fprintf(&b, "    input:\n      url: %s\n", im.input)
		case im.input != "":
			fmt.Fprintf(&b, "    input:\n      path: %s\n", im.input)
		}
	}
	path := filepath.Join(dir, "arch.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := LoadArchitecture(path)
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	return BuildSpec{Architecture: a}
}

// makeInput writes a qcow2 input with some data, through qemu-img.
func makeInput(t testing.TB, path, size string, seed byte) {
	t.Helper()
	raw := path + ".raw"
	f, err := os.Create(raw)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 300<<10)
	for i := range data {
		data[i] = byte(i*7) ^ seed
	}
	f.WriteAt(data, 1<<20)
	f.WriteAt(data[:4096], 3<<20)
	f.Close()
	oracle.MustRun(t, "convert", "-q", "-f", "raw", "-O", "qcow2", raw, path)
	os.Remove(raw)
	oracle.MustRun(t, "resize", "-q", path, size)
}

// hashTree returns the SHA-256 of every file in dir but the record's lock.
func hashTree(t testing.TB, dir string) map[string]string {
	t.Helper()
	sums := map[string]string{}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == ".gen-vm-image.lock" {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		rel, _ := filepath.Rel(dir, path)
		sums[rel] = hex.EncodeToString(sum[:])
		return nil
	})
	return sums
}

// TestReproducibleEveryWritableFormat: the same architecture built twice,
// in different directories, with 1 and 4 jobs and the images in another
// order, gives the same bytes in every file — images, SHA256SUMS and the
// manifest — for every format this version writes (those added later are
// covered as they register).
func TestReproducibleEveryWritableFormat(t *testing.T) {
	oracle.QemuImg(t)
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	work := t.TempDir()
	in := filepath.Join(work, "in.qcow2")
	makeInput(t, in, "6M", 1)
	var images []fleetImage
	for _, format := range disk.WritableFormats() {
		images = append(images,
			fleetImage{key: format + "-blank", name: "blank-" + format, size: "5M", format: format},
			fleetImage{key: format + "-input", name: "input-" + format, size: "8M", format: format, input: in})
	}
	ctx := context.Background()
	build := func(name string, jobs int, order []fleetImage) map[string]string {
		dir := filepath.Join(work, name)
		os.MkdirAll(dir, 0o755)
		spec := writeArch(t, dir, order)
		spec.OutputDirectory = filepath.Join(dir, "out")
		res, err := Build(ctx, spec, WithJobs(jobs), WithCacheDir(filepath.Join(work, "cache")), WithoutSync())
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, strings.Join(res.Messages, "\n"))
		}
		return hashTree(t, spec.OutputDirectory)
	}
	first := build("one", 1, images)
	// A second later: a time taken from the clock instead of
	// SOURCE_DATE_EPOCH would differ in a field of seconds.
	time.Sleep(1100 * time.Millisecond)
	shuffled := slices.Clone(images)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	second := build("two", 4, shuffled)
	if len(first) != 2*len(images)-len(images)+2 {
		t.Errorf("the first build wrote %v", first)
	}
	for name, sum := range first {
		if second[name] != sum {
			t.Errorf("%s differs between the builds: %s and %s", name, sum, second[name])
		}
	}
	if len(second) != len(first) {
		t.Errorf("the builds wrote %d and %d files", len(first), len(second))
	}
	t.Logf("formats: %v; files: %d", disk.WritableFormats(), len(first))
}

// TestRecordAfterSingleAndMultiple: the record of a directory that single
// and multiple both wrote into lists every image, sha256sum -c passes, and
// the manifest says what qemu-img says of each image.
func TestRecordAfterSingleAndMultiple(t *testing.T) {
	oracle.QemuImg(t)
	work := t.TempDir()
	in := filepath.Join(work, "in.qcow2")
	makeInput(t, in, "4M", 2)
	out := filepath.Join(work, "out")
	ctx := context.Background()
	if _, err := Generate(ctx, Spec{Name: "single", Size: "6M", Format: "raw", Input: &Input{Path: in}, OutputDirectory: out}); err != nil {
		t.Fatal(err)
	}
	spec := writeArch(t, work, []fleetImage{
		{key: "a", name: "alpha", size: "8M", format: "qcow2", input: in, options: "{cluster_size: 128K}"},
		{key: "b", name: "beta", size: "3M", format: "raw"},
	})
	spec.OutputDirectory = out
	if _, err := Build(ctx, spec); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sha256sum", "-c", "--strict", record.SumsName)
	cmd.Dir = out
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, b)
	}
	m, err := record.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range m.Images {
		files = append(files, e.File)
	}
	if strings.Join(files, " ") != "alpha.qcow2 beta.raw single.raw" {
		t.Fatalf("the record lists %v", files)
	}
	inSum, _ := os.ReadFile(in)
	want := sha256.Sum256(inSum)
	for _, e := range m.Images {
		path := filepath.Join(out, e.File)
		info := oracle.ImageInfo(t, path)
		st, _ := os.Stat(path)
		if info.VirtualSize != e.VirtualSize || info.Format != e.Format || st.Size() != e.FileSize {
			t.Errorf("%s: recorded %s, %d bytes virtual, %d in the file; qemu-img says %s, %d; the file is %d",
				e.File, e.Format, e.VirtualSize, e.FileSize, info.Format, info.VirtualSize, st.Size())
		}
		if e.ToolVersion != Version || !strings.HasPrefix(e.SpecDigest, "sha256:") {
			t.Errorf("%s: tool %q, spec digest %q", e.File, e.ToolVersion, e.SpecDigest)
		}
		switch e.File {
		case "alpha.qcow2", "single.raw":
			if e.Input == nil || e.Input.Path != in || e.Input.SHA256 != hex.EncodeToString(want[:]) || e.Input.Size != int64(len(inSum)) || e.Input.ModTime == "" {
				t.Errorf("%s: input %+v", e.File, e.Input)
			}
		case "beta.raw":
			if e.Input != nil {
				t.Errorf("beta: input %+v", e.Input)
			}
		}
	}
	if a := m.Lookup("alpha.qcow2"); a.Key != "a" || a.Options["cluster_size"] != "128K" {
		t.Errorf("alpha: %+v", a)
	}
	if s := m.Lookup("single.raw"); s.Key != "single" {
		t.Errorf("single: key %q", s.Key)
	}
}

// TestUpdateRebuildsExactlyTheStale: after one input, one size and one
// format change, --update rebuilds those three images and leaves the
// others; a rerun with nothing changed builds nothing; without --update a
// stale image is kept and -v says why.
func TestUpdateRebuildsExactlyTheStale(t *testing.T) {
	oracle.QemuImg(t)
	work := t.TempDir()
	inA, inB := filepath.Join(work, "a.qcow2"), filepath.Join(work, "b.qcow2")
	makeInput(t, inA, "4M", 3)
	makeInput(t, inB, "4M", 4)
	images := []fleetImage{
		{key: "a1", name: "a1", size: "6M", format: "qcow2", input: inA},
		{key: "a2", name: "a2", size: "6M", format: "raw", input: inA},
		{key: "b1", name: "b1", size: "6M", format: "qcow2", input: inB},
		{key: "b2", name: "b2", size: "6M", format: "qcow2", input: inB},
		{key: "blank", name: "blank", size: "2M", format: "qcow2"},
		{key: "same", name: "same", size: "2M", format: "raw"},
	}
	out := filepath.Join(work, "out")
	ctx := context.Background()
	run := func(images []fleetImage, update bool) (*BuildResult, []string) {
		t.Helper()
		spec := writeArch(t, work, images)
		spec.OutputDirectory, spec.Update = out, update
		res, err := Build(ctx, spec, WithJobs(2))
		if err != nil {
			t.Fatalf("%v\n%s", err, strings.Join(res.Messages, "\n"))
		}
		var built []string
		for _, im := range res.Images {
			if im.Created {
				built = append(built, im.Key)
			}
		}
		return res, built
	}
	if _, built := run(images, false); len(built) != len(images) {
		t.Fatalf("the first run built %v", built)
	}
	if _, built := run(images, true); len(built) != 0 {
		t.Fatalf("an update with nothing changed built %v", built)
	}
	// Touched, same bytes: still up to date (its digest is read, once).
	later := time.Now().Add(time.Hour)
	os.Chtimes(inB, later, later)
	if _, built := run(images, true); len(built) != 0 {
		t.Fatalf("an update after touching an input built %v", built)
	}

	makeInput(t, inA, "4M", 5) // a1 and a2 read it
	changed := slices.Clone(images)
	changed[2].size = "7M"    // b1
	changed[4].format = "raw" // blank: a new file, blank.raw
	res, built := run(changed, false)
	if len(built) != 1 || built[0] != "blank" {
		t.Fatalf("without --update, built %v", built)
	}
	msgs := strings.Join(res.Messages, "\n")
	for _, want := range []string{"a1.qcow2 is stale: its input " + inA + " changed", "b1.qcow2 is stale: its size is 7 MiB, not 6 MiB"} {
		if !strings.Contains(msgs, want) {
			t.Errorf("-v does not say %q:\n%s", want, msgs)
		}
	}
	changed[5].format = "qcow2" // same: a new file too
	_, built = run(changed, true)
	slices.Sort(built)
	if strings.Join(built, " ") != "a1 a2 b1 same" {
		t.Fatalf("--update rebuilt %v, want a1 a2 b1 same", built)
	}
	for _, name := range []string{"a1.qcow2", "b1.qcow2", "same.qcow2"} {
		oracle.Check(t, filepath.Join(out, name), "qcow2")
	}
	oracle.AssertSame(t, inA, "qcow2", filepath.Join(out, "a2.raw"), "raw")
	if info := oracle.ImageInfo(t, filepath.Join(out, "b1.qcow2")); info.VirtualSize != 7<<20 {
		t.Errorf("b1 is %d bytes", info.VirtualSize)
	}
	if _, built := run(changed, true); len(built) != 0 {
		t.Fatalf("the next update built %v", built)
	}
	cmd := exec.Command("sha256sum", "-c", "--strict", record.SumsName)
	cmd.Dir = out
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, b)
	}
}

// TestUpdateSeesAURLChange: a download that changed on the server is seen
// through the cache's revalidation and rebuilt; one that did not is left.
func TestUpdateSeesAURLChange(t *testing.T) {
	oracle.QemuImg(t)
	work := t.TempDir()
	inA, inB := filepath.Join(work, "a.qcow2"), filepath.Join(work, "b.qcow2")
	makeInput(t, inA, "4M", 6)
	makeInput(t, inB, "4M", 7)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(work, filepath.Base(r.URL.Path)))
	}))
	defer srv.Close()
	images := []fleetImage{
		{key: "a", name: "a", size: "6M", format: "qcow2", input: srv.URL + "/a.qcow2"},
		{key: "b", name: "b", size: "6M", format: "raw", input: srv.URL + "/b.qcow2"},
	}
	spec := writeArch(t, work, images)
	spec.OutputDirectory = filepath.Join(work, "out")
	cache := WithCacheDir(filepath.Join(work, "cache"))
	ctx := context.Background()
	if _, err := Build(ctx, spec, cache); err != nil {
		t.Fatal(err)
	}
	spec.Update = true
	res, err := Build(ctx, spec, cache)
	if err != nil || res.Images[0].Created || res.Images[1].Created {
		t.Fatalf("nothing changed, and: %v %+v", err, res.Images)
	}
	makeInput(t, inA, "4M", 8)
	later := time.Now().Add(time.Hour) // a Last-Modified the server's validators change with
	os.Chtimes(inA, later, later)
	res, err = Build(ctx, spec, cache)
	if err != nil || !res.Images[0].Created || res.Images[1].Created {
		t.Fatalf("a changed on the server, and: %v %+v\n%s", err, res.Images, strings.Join(res.Messages, "\n"))
	}
	oracle.AssertSame(t, inA, "qcow2", filepath.Join(spec.OutputDirectory, "a.qcow2"), "qcow2")
}

// TestPlanWritesAndDownloadsNothing: a dry run leaves the tree as it was
// and makes no GET, and says per image what a run would do.
func TestPlanWritesAndDownloadsNothing(t *testing.T) {
	oracle.QemuImg(t)
	work := t.TempDir()
	in := filepath.Join(work, "in.qcow2")
	makeInput(t, in, "4M", 9)
	var mu sync.Mutex
	var methods []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		methods = append(methods, r.Method)
		mu.Unlock()
		http.ServeFile(w, r, in)
	}))
	defer srv.Close()
	out := filepath.Join(work, "out")
	images := []fleetImage{
		{key: "local", name: "local", size: "6M", format: "qcow2", input: in},
		{key: "web", name: "web", size: "6M", format: "raw", input: srv.URL + "/in.qcow2"},
		{key: "blank", name: "blank", size: "1G", format: "qcow2"},
	}
	spec := writeArch(t, work, images)
	spec.OutputDirectory = out
	before := hashTree(t, work)
	cache := filepath.Join(work, "cache")
	plan, err := Plan(context.Background(), spec, WithCacheDir(cache))
	if err != nil {
		t.Fatal(err)
	}
	if after := hashTree(t, work); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a plan changed the tree:\n%v\n%v", before, after)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a plan created the output directory")
	}
	if _, err := os.Stat(cache); err == nil {
		t.Error("a plan created the cache")
	}
	if slices.ContainsFunc(methods, func(m string) bool { return m != http.MethodHead }) {
		t.Errorf("a plan made requests %v", methods)
	}
	lines := strings.Join(plan.Lines(), "\n")
	for _, want := range []string{"local: build;", "web: build;", "to download, ", "blank: build;", "local file", "Total: about"} {
		if !strings.Contains(lines, want) {
			t.Errorf("the plan does not say %q:\n%s", want, lines)
		}
	}
	// qemu-img measure agrees with the estimates, within a cluster or two.
	for _, pi := range plan.Images {
		args := []string{"measure", "--output=json", "-O", "qcow2"}
		if pi.Key == "blank" {
			args = append(args, "--size", "1G")
		} else if pi.Key == "local" {
			args = append(args, "--size", "6M", in) // qemu-img takes one
			args = slices.Delete(args, 4, 6)
		} else {
			continue
		}
		var m struct{ Required int64 }
		json.Unmarshal([]byte(oracle.MustRun(t, args...)), &m)
		if d := pi.Expected - m.Required; d > 256<<10 || d < -256<<10 {
			t.Errorf("%s: expected %d bytes on disk, qemu-img measure says %d", pi.Key, pi.Expected, m.Required)
		}
	}

	// Built, then planned again: up to date with --update, kept without.
	if _, err := Build(context.Background(), spec, WithCacheDir(cache)); err != nil {
		t.Fatal(err)
	}
	spec.Update = true
	plan, err = Plan(context.Background(), spec, WithCacheDir(cache))
	if err != nil {
		t.Fatal(err)
	}
	if c := plan.Counts(); c[ActionUpToDate] != 3 {
		t.Errorf("after a build, the update plan is %v:\n%s", c, strings.Join(plan.Lines(), "\n"))
	}
	spec.Update = false
	plan, err = Plan(context.Background(), spec, WithCacheDir(cache))
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Join(plan.Lines(), "\n"); !strings.Contains(lines, "local: keep (it exists; --overwrite rebuilds it);") {
		t.Errorf("a plan without --update does not say why an image is kept:\n%s", lines)
	}
}

// TestSpaceRefusal: a run whose images clearly cannot fit refuses before
// it starts, naming the figures, unless told not to check.
func TestSpaceRefusal(t *testing.T) {
	oracle.QemuImg(t)
	work := t.TempDir()
	in := filepath.Join(work, "in.qcow2")
	makeInput(t, in, "4M", 10)
	spec := writeArch(t, work, []fleetImage{
		{key: "a", name: "a", size: "6M", format: "qcow2", input: in},
		{key: "b", name: "b", size: "6M", format: "raw", input: in},
	})
	spec.OutputDirectory = filepath.Join(work, "out")
	tiny := WithFreeSpace(func(string) (int64, bool) { return 100 << 10, true })
	_, err := Build(context.Background(), spec, tiny)
	if CodeOf(err) != CodeCreateFailed || !strings.Contains(err.Error(), "Not enough space in") || !strings.Contains(err.Error(), "100 KiB (102400 bytes) is free") {
		t.Fatalf("code %d: %v", CodeOf(err), err)
	}
	if _, err := os.Stat(spec.OutputDirectory); err == nil {
		t.Error("the refused run created the output directory")
	}
	if _, err := Build(context.Background(), spec, tiny, WithoutSpaceCheck()); err != nil {
		t.Fatalf("with the check off: %v", err)
	}
}

// TestInterruptedImageInPlaceIsRecorded: an interruption that arrives once
// an image is being put in place (checked, syncing) does not keep it out
// of the record: every image in the directory is in SHA256SUMS and the
// manifest, and the images not started are not built.
func TestInterruptedImageInPlaceIsRecorded(t *testing.T) {
	oracle.QemuImg(t)
	work := t.TempDir()
	in := filepath.Join(work, "in.qcow2")
	makeInput(t, in, "4M", 3)
	spec := writeArch(t, work, []fleetImage{
		{key: "a", name: "alpha", size: "8M", format: "qcow2", input: in},
		{key: "b", name: "beta", size: "6M", format: "raw", input: in},
	})
	out := filepath.Join(work, "out")
	spec.OutputDirectory = out
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	interrupt := func(o *options) { o.beforePublish = func(string) { cancel() } }
	if _, err := Build(ctx, spec, WithJobs(1), interrupt); err == nil {
		t.Fatal("an interrupted build succeeded")
	}
	if got := imageFiles(t, out); strings.Join(got, " ") != "alpha.qcow2" {
		t.Fatalf("the directory holds %v, want alpha.qcow2 alone", got)
	}
	cmd := exec.Command("sha256sum", "-c", "--strict", record.SumsName)
	cmd.Dir = out
	if b, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(b), "alpha.qcow2: OK") {
		t.Fatalf("sha256sum -c: %v\n%s", err, b)
	}
	m, err := record.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	if e := m.Lookup("alpha.qcow2"); e == nil || e.Key != "a" || len(m.Images) != 1 {
		t.Fatalf("the manifest lists %+v", m.Images)
	}
}
