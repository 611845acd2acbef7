package fetch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDecompressLocal: made once, reused while the file is unchanged,
// made again when the file changes or the copy is damaged.
func TestDecompressLocal(t *testing.T) {
	dir := t.TempDir()
	data := payload(500_000)
	in := filepath.Join(dir, "img.raw.gz")
	if err := os.WriteFile(in, compress(t, "gzip", data), 0o644); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	run := func() *Result {
		t.Helper()
		f, err := os.Open(in)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		res, err := DecompressLocal(context.Background(), f, cache)
		if err != nil {
			t.Fatalf("%v\n%q", err, res.Messages)
		}
		t.Cleanup(func() { res.File.Close() })
		return res
	}
	res := run()
	checkContent(t, res, data)
	if res.CacheHit || res.Compression != "gzip" {
		t.Errorf("first: %+v", res)
	}
	if res = run(); !res.CacheHit {
		t.Errorf("second: not a hit: %q", res.Messages)
	}
	checkContent(t, res, data)

	// The copy damaged: made again.
	f, _ := os.OpenFile(res.Path, os.O_RDWR, 0)
	f.WriteAt([]byte{0xff}, 100)
	f.Close()
	if res = run(); res.CacheHit || !hasMessage(res, "damaged") {
		t.Errorf("damaged copy: %q", res.Messages)
	}
	checkContent(t, res, data)

	// The input changed: made again from the new content.
	data2 := payload(400_000)
	os.WriteFile(in, compress(t, "gzip", data2), 0o644)
	os.Chtimes(in, time.Now(), time.Now().Add(time.Hour))
	if res = run(); res.CacheHit {
		t.Errorf("changed input: a hit: %q", res.Messages)
	}
	checkContent(t, res, data2)
}
