package output

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

func write(t *testing.T, tmp *Temp, s string) {
	t.Helper()
	if _, err := tmp.File.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func TestPublishNeverReplacesWithoutOverwrite(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "img.qcow2")
	if err := os.WriteFile(final, []byte("first"), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp, err := Create(final, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	write(t, tmp, "second")
	if err := tmp.Publish(false, true); !errors.Is(err, ErrExists) {
		t.Fatalf("Publish over an existing file = %v, want ErrExists", err)
	}
	if got, _ := os.ReadFile(final); string(got) != "first" {
		t.Errorf("the existing file was replaced: %q", got)
	}
	assertOnly(t, dir, "img.qcow2")

	tmp, err = Create(final, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	write(t, tmp, "third")
	if err := tmp.Publish(true, true); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(final); string(got) != "third" {
		t.Errorf("with overwrite: %q", got)
	}
	if st, _ := os.Stat(final); runtime.GOOS != "windows" && st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644 whatever the umask", st.Mode())
	}
	assertOnly(t, dir, "img.qcow2")
}

// TestRaceForOneName: of several writers publishing one name at once
// without overwrite, exactly one wins; the others get ErrExists and leave
// nothing behind.
func TestRaceForOneName(t *testing.T) {
	dir := t.TempDir()
	final := filepath.Join(dir, "img.raw")
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			tmp, err := Create(final, 0o644)
			if err != nil {
				errs[i] = err
				return
			}
			tmp.File.WriteString("writer")
			errs[i] = tmp.Publish(false, false)
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrExists):
			t.Errorf("Publish: %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d writers published, want 1", won)
	}
	assertOnly(t, dir, "img.raw")
}

func TestCleanAbandoned(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock: temporary files are never taken for abandoned")
	}
	dir := t.TempDir()
	final := filepath.Join(dir, "img.qcow2")
	live, err := Create(final, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Abort()
	// What a killed run leaves: our temporary name, nobody holding it.
	dead := filepath.Join(dir, ".img.qcow2"+tempMarker+"0123456789ab")
	if err := os.WriteFile(dead, []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Names that are not ours stay, whatever they look like.
	for _, name := range []string{".img.qcow2.tmp-123", "img.qcow2" + tempMarker + "0123456789ab", ".x" + tempMarker + "short"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A link under our name is not ours: left alone, its target untouched.
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious"), 0o644)
	link := filepath.Join(dir, ".y"+tempMarker+"ba9876543210")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}

	removed, err := CleanAbandoned(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != dead {
		t.Errorf("removed %q, want only %s", removed, dead)
	}
	if _, err := os.Stat(live.Name()); err != nil {
		t.Errorf("the file being written was removed: %v", err)
	}
	if got, _ := os.ReadFile(victim); string(got) != "precious" {
		t.Errorf("victim %q", got)
	}
}

// assertOnly checks that dir holds exactly the names given.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if len(got) != len(names) {
		t.Fatalf("%s holds %q, want %q", dir, got, names)
	}
	for i := range names {
		if got[i] != names[i] {
			t.Fatalf("%s holds %q, want %q", dir, got, names)
		}
	}
}
