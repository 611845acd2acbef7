// Package testcorpus finds ../shared/corpus, the real-world test images that
// live beside the repository (never inside it).
package testcorpus

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Dir returns the corpus directory, or skips the test with a message when it
// is absent. GVI_CORPUS overrides the location.
func Dir(t testing.TB) string {
	t.Helper()
	dir, err := find()
	if err != nil {
		t.Skipf("%v: corpus tests skipped", err)
	}
	return dir
}

// Lookup returns the corpus directory, and false when it is absent, without
// skipping: fuzz targets use it, which run on their other seeds then.
func Lookup() (string, bool) {
	dir, err := find()
	return dir, err == nil
}

func find() (string, error) {
	if d := os.Getenv("GVI_CORPUS"); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			c := filepath.Join(d, "..", "shared", "corpus")
			if _, err := os.Stat(filepath.Join(c, "MANIFEST.tsv")); err != nil {
				return "", fmt.Errorf("corpus not found at %s", c)
			}
			return c, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("module root not found")
		}
	}
}

// Files returns the contents of the corpus files whose names keep says to
// keep, by path relative to dir (MANIFEST.tsv and the like are not images).
func Files(dir string, keep func(name string) bool) map[string][]byte {
	files := map[string][]byte{}
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, ".tsv") || strings.HasSuffix(path, ".md") || !keep(d.Name()) {
			return nil
		}
		if b, err := os.ReadFile(path); err == nil {
			rel, _ := filepath.Rel(dir, path)
			files[rel] = b
		}
		return nil
	})
	return files
}

// Entry is one row of MANIFEST.tsv.
type Entry struct {
	File        string // relative to the corpus dir; "[not kept]" rows have NotKept set
	NotKept     bool
	Size        int64  // bytes, as the manifest gives them (of the unpacked file for "[not kept]" rows)
	QemuFormat  string // what qemu-img info said ("qcow2", "ERROR: ..." ...)
	VirtualSize string
	Notes       string
}

// Malformed reports whether the manifest marks the file hostile or broken.
func (e Entry) Malformed() bool { return strings.Contains(e.Notes, "MALFORMED") }

// Manifest reads MANIFEST.tsv.
func Manifest(t testing.TB) []Entry {
	t.Helper()
	dir := Dir(t)
	f, err := os.Open(filepath.Join(dir, "MANIFEST.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	first := true
	for sc.Scan() {
		if first {
			first = false
			continue
		}
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) < 10 {
			continue
		}
		e := Entry{File: cols[0], QemuFormat: cols[7], VirtualSize: cols[8], Notes: cols[9]}
		e.Size, _ = strconv.ParseInt(cols[5], 10, 64)
		if strings.Contains(e.File, "[not kept]") {
			e.NotKept = true
			e.File = strings.TrimSpace(strings.Replace(e.File, "[not kept]", "", 1))
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
