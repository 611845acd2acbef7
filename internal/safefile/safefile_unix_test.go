//go:build unix

package safefile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// plant makes the hostile things a shared directory may hold, each beside a
// victim file that must never be written.
func plant(t *testing.T) (dir, victim string) {
	t.Helper()
	dir = t.TempDir()
	victim = filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "symlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(victim, filepath.Join(dir, "hardlink")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "regular"), []byte("ours"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, victim
}

// withTimeout fails the test instead of hanging when fn blocks (a FIFO).
func withTimeout(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { fn(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s blocked", what)
	}
}

func TestOpenRefusesWhatIsNotARegularFile(t *testing.T) {
	dir, _ := plant(t)
	for _, name := range []string{"symlink", "fifo", "dir"} {
		withTimeout(t, "Open "+name, func() {
			f, err := Open(filepath.Join(dir, name))
			if err == nil {
				f.Close()
				t.Errorf("Open(%s) succeeded", name)
			}
		})
	}
	f, err := Open(filepath.Join(dir, "regular"))
	if err != nil {
		t.Fatalf("Open(regular): %v", err)
	}
	f.Close()
	if _, err := Open(filepath.Join(dir, "fifo")); !errors.Is(err, ErrNotRegular) {
		t.Errorf("Open(fifo) = %v, want ErrNotRegular", err)
	}
}

func TestOpenWritableReplacesWhatIsPlanted(t *testing.T) {
	dir, victim := plant(t)
	for _, name := range []string{"symlink", "hardlink", "fifo"} {
		withTimeout(t, "OpenWritable "+name, func() {
			f, created, err := OpenWritable(filepath.Join(dir, name), 0o644)
			if err != nil {
				t.Errorf("OpenWritable(%s): %v", name, err)
				return
			}
			if !created {
				t.Errorf("OpenWritable(%s) reused what was there", name)
			}
			f.WriteString("overwritten")
			f.Close()
		})
	}
	if got, _ := os.ReadFile(victim); string(got) != "precious" {
		t.Errorf("the victim was written: %q", got)
	}
	f, created, err := OpenWritable(filepath.Join(dir, "regular"), 0o644)
	if err != nil || created {
		t.Fatalf("OpenWritable(regular) = created %v, %v; want the file of ours reused", created, err)
	}
	f.Close()
}

func TestForeignFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
	dir := t.TempDir()
	name := filepath.Join(dir, "theirs")
	if err := os.WriteFile(name, []byte("theirs"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(name, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenOwned(name); !errors.Is(err, ErrForeign) {
		t.Errorf("OpenOwned(another user's file) = %v, want ErrForeign", err)
	}
	f, created, err := OpenWritable(name, 0o644)
	if err != nil || !created {
		t.Fatalf("OpenWritable(another user's file) = created %v, %v; want it replaced", created, err)
	}
	f.Close()
}

// TestOpenWritableRace has many openers race for a name that does not exist
// yet: every one must end up with the same file, never remove another's
// new file and make one of its own (a lock file held by two processes).
func TestOpenWritableRace(t *testing.T) {
	for round := range 20 {
		name := filepath.Join(t.TempDir(), "lock")
		const openers = 8
		files := make([]*os.File, openers)
		errs := make([]error, openers)
		start := make(chan struct{})
		done := make(chan int)
		for i := range openers {
			go func() {
				<-start
				files[i], _, errs[i] = OpenWritable(name, 0o644)
				done <- i
			}()
		}
		close(start)
		for range openers {
			<-done
		}
		onDisk, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range files {
			if errs[i] != nil {
				t.Fatalf("round %d, opener %d: %v", round, i, errs[i])
			}
			st, err := f.Stat()
			f.Close()
			if err != nil || !os.SameFile(st, onDisk) {
				t.Fatalf("round %d, opener %d holds a file that is no longer at %s", round, i, name)
			}
		}
	}
}
