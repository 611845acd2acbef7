//go:build linux

// The shipped sbatch example, run by a real Slurm: an array of 4 tasks
// builds a 16-image architecture into one output directory with one cache.
package slurm_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
	"github.com/ucphhpc/gen-vm-image-go/internal/slurmtest"
	"github.com/ucphhpc/gen-vm-image-go/record"
)

// inputs are the raw disks the architecture's URL inputs name: 1 MiB
// each, different content.
func inputs() map[string][]byte {
	out := map[string][]byte{}
	for i := 0; i < 4; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			copy(b[j:], fmt.Sprintf("input %d block %d\n", i, j/4096))
		}
		out[fmt.Sprintf("/disk%d.raw", i)] = b
	}
	return out
}

func TestSbatchArrayBuildsEveryImageOnce(t *testing.T) {
	oracle.QemuImg(t)
	cluster := slurmtest.Start(t)

	work := t.TempDir()
	bin := filepath.Join(work, "bin")
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "gen-vm-image"), "../../cmd/gen-vm-image")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	disks := inputs()
	var mu sync.Mutex
	gets := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := disks[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method == http.MethodGet {
			mu.Lock()
			gets[r.URL.Path]++
			mu.Unlock()
		}
		http.ServeContent(w, r, r.URL.Path, time.Unix(1700000000, 0), bytes.NewReader(b))
	}))
	defer srv.Close()

	// 16 images: 12 from the 4 URLs (3 each, qcow2 and raw), 4 blank.
	var arch strings.Builder
	arch.WriteString("owner: slurm-test\nimages:\n")
	type image struct{ file, format, input string }
	var images []image
	for i := 0; i < 16; i++ {
		format := []string{"qcow2", "raw"}[i%2]
		fmt.Fprintf(&arch, "  img%02d:\n    name: img%02d\n    size: 4M\n    format: %s\n", i, i, format)
		im := image{file: fmt.Sprintf("img%02d.%s", i, format), format: format}
		if i < 12 {
			path := fmt.Sprintf("/disk%d.raw", i%4)
			sum := sha256.Sum256(disks[path])
			fmt.Fprintf(&arch, "    input:\n      url: %s%s\n      checksum: {type: sha256, value: %s}\n", srv.URL, path, hex.EncodeToString(sum[:]))
			im.input = path
		}
		images = append(images, im)
	}
	submit := filepath.Join(work, "submit")
	os.MkdirAll(submit, 0o755)
	if err := os.WriteFile(filepath.Join(submit, "images.yml"), []byte(arch.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	script, _ := filepath.Abs("build-images.sbatch")

	sbatch := cluster.Command("sbatch", "--wait", "--array=0-3", script, "images.yml")
	sbatch.Dir = submit
	sbatch.Env = append(sbatch.Env, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "GVI_CACHE_DIR="+filepath.Join(work, "cache"),
		// The lock files shared file systems need (flock is tried by every
		// other test): the tasks run as separate processes.
		"GVI_LOCK_MODE=file")
	start := time.Now()
	out, err := sbatch.CombinedOutput()
	elapsed := time.Since(start)
	logs, _ := filepath.Glob(filepath.Join(submit, "gen-vm-image-*.out"))
	sort.Strings(logs)
	var results strings.Builder
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		fmt.Fprintf(&results, "%s:\n%s\n", filepath.Base(l), b)
	}
	if err != nil {
		t.Fatalf("sbatch --wait --array=0-3: %v\n%s\n%s", err, out, results.String())
	}
	if len(logs) != 4 {
		t.Fatalf("%d task outputs, want 4:\n%s", len(logs), results.String())
	}
	t.Logf("array of 4 tasks: %v on %d cores", elapsed.Round(time.Millisecond), runtime.NumCPU())

	outDir := filepath.Join(submit, "generated-images")
	entries, err := os.ReadDir(outDir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		files = append(files, e.Name())
	}
	for _, im := range images {
		path := filepath.Join(outDir, im.file)
		if _, err := os.Stat(path); err != nil {
			t.Errorf("%s was not built: %v\n%s", im.file, err, results.String())
			continue
		}
		if im.format == "qcow2" {
			oracle.AssertQcow2(t, path, 4<<20)
		}
		src := filepath.Join(work, "blank.raw")
		if im.input != "" {
			src = filepath.Join(work, strings.TrimPrefix(im.input, "/"))
			os.WriteFile(src, disks[im.input], 0o644)
		} else {
			os.WriteFile(src, nil, 0o644)
		}
		oracle.AssertSame(t, path, im.format, src, "raw")
	}
	checkRecord(t, outDir, len(images))
	for path, n := range gets {
		if n != 1 {
			t.Errorf("%s was downloaded %d times by the 4 tasks; want once", path, n)
		}
	}
	if len(gets) != 4 {
		t.Errorf("downloads: %v; want each of the 4 inputs once", gets)
	}
	t.Logf("output directory: %v", files)

	// The figure the README gives: the same 16 images built by one task
	// (an array of 1), from a cold cache, against the array of 4 above.
	one := filepath.Join(work, "one")
	os.MkdirAll(one, 0o755)
	os.WriteFile(filepath.Join(one, "images.yml"), []byte(arch.String()), 0o644)
	sbatch = cluster.Command("sbatch", "--wait", "--array=0-0", script, "images.yml")
	sbatch.Dir = one
	sbatch.Env = append(sbatch.Env, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "GVI_CACHE_DIR="+filepath.Join(work, "cache-one"), "GVI_LOCK_MODE=file")
	start = time.Now()
	if out, err := sbatch.CombinedOutput(); err != nil {
		t.Fatalf("sbatch --wait --array=0-0: %v\n%s", err, out)
	}
	t.Logf("one task: %v; array of 4: %v (ratio %.2f)", time.Since(start).Round(time.Millisecond), elapsed.Round(time.Millisecond), elapsed.Seconds()/time.Since(start).Seconds())
	checkRecord(t, filepath.Join(one, "generated-images"), len(images))
}

// checkRecord: the output directory lists every image once, in
// SHA256SUMS (which sha256sum -c accepts there) and in the manifest.
func checkRecord(t *testing.T, dir string, n int) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	count := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "img") {
			count++
		}
	}
	if count != n {
		t.Errorf("%d images in %s, want %d", count, dir, n)
	}
	sums, err := os.ReadFile(filepath.Join(dir, record.SumsName))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		if _, name, ok := strings.Cut(line, "  "); ok {
			listed[name]++
		}
	}
	m, err := record.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	inManifest := map[string]int{}
	for _, im := range m.Images {
		inManifest[im.File]++
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "img") {
			continue
		}
		if listed[e.Name()] != 1 || inManifest[e.Name()] != 1 {
			t.Errorf("%s is listed %d times in %s and %d times in the manifest; want once", e.Name(), listed[e.Name()], record.SumsName, inManifest[e.Name()])
		}
	}
	if len(listed) != n || len(m.Images) != n {
		t.Errorf("%s lists %d files and the manifest %d images; want %d", record.SumsName, len(listed), len(m.Images), n)
	}
	check := exec.Command("sha256sum", "-c", "--quiet", record.SumsName)
	check.Dir = dir
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c %s: %v\n%s", record.SumsName, err, out)
	}
}
