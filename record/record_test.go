package record

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/internal/filelock"
)

// put writes a file in dir and returns its entry.
func put(t testing.TB, dir, name, content string) Image {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(content))
	return Image{Key: name, File: name, Format: "raw", FileSize: int64(len(content)), SHA256: hex.EncodeToString(sum[:]), ToolVersion: "test"}
}

func TestUpdateWritesSortedSumsThatSha256sumAccepts(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	b := put(t, dir, "b.raw", "bbb")
	a := put(t, dir, "a.qcow2", "aaaa")
	if err := Update(ctx, dir, []Image{b}, nil, true, filelock.Auto); err != nil {
		t.Fatal(err)
	}
	if err := Update(ctx, dir, []Image{a}, nil, true, filelock.Auto); err != nil {
		t.Fatal(err)
	}
	sums, err := os.ReadFile(filepath.Join(dir, SumsName))
	if err != nil {
		t.Fatal(err)
	}
	want := a.SHA256 + "  a.qcow2\n" + b.SHA256 + "  b.raw\n"
	if string(sums) != want {
		t.Errorf("SHA256SUMS:\n%s\nwant:\n%s", sums, want)
	}
	if _, err := exec.LookPath("sha256sum"); err == nil {
		cmd := exec.Command("sha256sum", "-c", "--strict", SumsName)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("sha256sum -c: %v\n%s", err, out)
		}
	}
	m, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Images) != 2 || m.Lookup("b.raw") == nil || m.Lookup("b.raw").SHA256 != b.SHA256 || m.Lookup("c") != nil {
		t.Errorf("manifest: %+v", m)
	}
	// Replaced, then gone: the entry follows the file.
	b2 := put(t, dir, "b.raw", "bbbbbb")
	if err := Update(ctx, dir, []Image{b2}, nil, true, filelock.Auto); err != nil {
		t.Fatal(err)
	}
	if m, _ := Read(dir); m.Lookup("b.raw").SHA256 != b2.SHA256 || len(m.Images) != 2 {
		t.Errorf("after replacing b.raw: %+v", m)
	}
	os.Remove(filepath.Join(dir, "a.qcow2"))
	if err := Update(ctx, dir, nil, nil, false, filelock.Auto); err != nil {
		t.Fatal(err)
	}
	if m, _ := Read(dir); len(m.Images) != 1 || m.Lookup("a.qcow2") != nil {
		t.Errorf("after removing a.qcow2: %+v", m)
	}
	// Nothing of ours is left beside the record, not even the lock.
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "SHA256SUMS b.raw gen-vm-image.json" {
		t.Errorf("directory holds %s", got)
	}
}

func TestUpdateRefusesNamesSha256sumCannotRead(t *testing.T) {
	for _, name := range []string{"", "a/b", "..", "a\nb", `a\b`} {
		if err := Update(context.Background(), t.TempDir(), []Image{{File: name}}, nil, false, filelock.Auto); err == nil {
			t.Errorf("%q: no error", name)
		}
	}
}

func TestReadToleratesForeignManifests(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ManifestName), []byte(`{"version": 99, "images": 5}`), 0o644)
	m, err := Read(dir)
	if err != nil || len(m.Images) != 0 {
		t.Errorf("another version: %v %+v", err, m)
	}
	os.WriteFile(filepath.Join(dir, ManifestName), []byte(`{"version": 1, "images": [`), 0o644)
	if _, err := Read(dir); err == nil {
		t.Error("a truncated manifest read without error")
	}
	// Update replaces a manifest it cannot read.
	im := put(t, dir, "x.raw", "x")
	if err := Update(context.Background(), dir, []Image{im}, nil, false, filelock.Auto); err != nil {
		t.Fatal(err)
	}
	if m, err := Read(dir); err != nil || m.Lookup("x.raw") == nil {
		t.Errorf("after update: %v %+v", err, m)
	}
}

// TestConcurrentUpdatesLoseNothing: processes that update the same record
// at once each find their entries in the result, with flock and with the
// lock files of shared file systems.
func TestConcurrentUpdatesLoseNothing(t *testing.T) {
	if dir := os.Getenv("GVI_RECORD_HELPER_DIR"); dir != "" {
		n, _ := strconv.Atoi(os.Getenv("GVI_RECORD_HELPER_N"))
		mode, _ := filelock.ParseMode(os.Getenv("GVI_RECORD_HELPER_MODE"))
		for i := range 10 {
			im := put(t, dir, fmt.Sprintf("p%d-%d.raw", n, i), fmt.Sprint(n, i))
			if err := Update(context.Background(), dir, []Image{im}, nil, false, mode); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	for _, mode := range []filelock.Mode{filelock.Flock, filelock.Exclusive} {
		t.Run(mode.String(), func(t *testing.T) { testConcurrentUpdates(t, mode) })
	}
}

func testConcurrentUpdates(t *testing.T, mode filelock.Mode) {
	dir := t.TempDir()
	const processes = 4
	var wg sync.WaitGroup
	errs := make([]error, processes+1)
	for p := range processes {
		wg.Go(func() {
			cmd := exec.Command(os.Args[0], "-test.run=^TestConcurrentUpdatesLoseNothing$")
			cmd.Env = append(os.Environ(), "GVI_RECORD_HELPER_DIR="+dir, "GVI_RECORD_HELPER_N="+strconv.Itoa(p), "GVI_RECORD_HELPER_MODE="+mode.String())
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[p] = fmt.Errorf("process %d: %v\n%s", p, err, out)
			}
		})
	}
	// And goroutines of this process too.
	wg.Go(func() {
		for i := range 10 {
			im := put(t, dir, fmt.Sprintf("g-%d.raw", i), fmt.Sprint("g", i))
			if err := Update(context.Background(), dir, []Image{im}, nil, false, mode); err != nil {
				errs[processes] = err
				return
			}
		}
	})
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	m, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Images) != (processes+1)*10 {
		t.Errorf("%d entries, want %d", len(m.Images), (processes+1)*10)
	}
	sums, _ := os.ReadFile(filepath.Join(dir, SumsName))
	if n := strings.Count(string(sums), "\n"); n != (processes+1)*10 {
		t.Errorf("SHA256SUMS has %d lines", n)
	}
}

func TestHashFileSkipsHolesButHashesZeros(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "sparse")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(8 << 20)
	f.WriteAt([]byte("data in the middle"), 3<<20+17)
	f.Truncate(9<<20 + 5)
	got, size, err := HashFile(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	content, _ := os.ReadFile(name)
	want := sha256.Sum256(content)
	if got != hex.EncodeToString(want[:]) || size != int64(len(content)) {
		t.Errorf("HashFile = %s %d, want %x %d", got, size, want, len(content))
	}
}
