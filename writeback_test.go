package genvm

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The write-behind goroutine is kicked while a file is written, and stop
// returns once it is done; the file's content is whatever was written.
func TestWriteBehind(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wb := startWriteBehind(f, true)
	block := bytes.Repeat([]byte{0xa5}, 1<<20)
	const blocks = 3 * writeBehindStep / (1 << 20)
	for i := range blocks {
		if _, err := f.WriteAt(block, int64(i)<<20); err != nil {
			t.Fatal(err)
		}
		wb.progress(int64(i+1) << 20)
	}
	wb.stop()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != blocks<<20 || !bytes.Equal(got, bytes.Repeat([]byte{0xa5}, blocks<<20)) {
		t.Fatalf("file holds %d bytes, not the %d written", len(got), blocks<<20)
	}
}
