//go:build unix

package record

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/internal/filelock"
)

// TestPlantedFilesAreNotFollowed: a FIFO or a link planted as the manifest
// or the lock is neither waited on nor followed; the record replaces it.
func TestPlantedFilesAreNotFollowed(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte(`{"version": 1, "images": []}`), 0o644)
	if err := syscall.Mkfifo(filepath.Join(dir, ManifestName), 0o644); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	os.Symlink(victim, filepath.Join(dir, SumsName))
	os.Symlink(victim, filepath.Join(dir, lockName))
	if _, err := Read(dir); err == nil {
		t.Error("a FIFO read as a manifest")
	}
	im := put(t, dir, "x.raw", "x")
	if err := Update(context.Background(), dir, []Image{im}, nil, false, filelock.Auto); err != nil {
		t.Fatal(err)
	}
	if m, err := Read(dir); err != nil || m.Lookup("x.raw") == nil {
		t.Errorf("after update: %v %+v", err, m)
	}
	if b, _ := os.ReadFile(victim); string(b) != `{"version": 1, "images": []}` {
		t.Errorf("the link's target was written: %q", b)
	}
	for _, name := range []string{ManifestName, SumsName} {
		if st, err := os.Lstat(filepath.Join(dir, name)); err != nil || !st.Mode().IsRegular() {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The lock is released, and its file removed with it.
	if _, err := os.Lstat(filepath.Join(dir, lockName)); !os.IsNotExist(err) {
		t.Errorf("%s is left: %v", lockName, err)
	}
}
