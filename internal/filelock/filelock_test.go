package filelock

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func modes(t *testing.T) []Mode {
	if flockSupported {
		return []Mode{Flock, Exclusive}
	}
	return []Mode{Exclusive}
}

// Many holders taking turns on a counter in a file never lose an update.
func TestMutualExclusion(t *testing.T) {
	for _, m := range modes(t) {
		t.Run(m.String(), func(t *testing.T) {
			dir := t.TempDir()
			name := filepath.Join(dir, "x.lock")
			counter := filepath.Join(dir, "counter")
			os.WriteFile(counter, []byte("0"), 0o644)
			var inside atomic.Int32
			var wg sync.WaitGroup
			for g := 0; g < 6; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 10; i++ {
						l, err := Acquire(context.Background(), name, Options{Mode: m, Stale: 2 * time.Second})
						if err != nil {
							t.Error(err)
							return
						}
						if inside.Add(1) != 1 {
							t.Error("two holders at once")
						}
						b, _ := os.ReadFile(counter)
						n, _ := strconv.Atoi(string(b))
						time.Sleep(time.Millisecond)
						os.WriteFile(counter, []byte(strconv.Itoa(n+1)), 0o644)
						inside.Add(-1)
						l.Release()
					}
				}()
			}
			wg.Wait()
			if b, _ := os.ReadFile(counter); string(b) != "60" {
				t.Fatalf("counter = %s, want 60", b)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, "x.lock*")); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

// A holder that keeps touching its lock keeps it, however long it holds
// it beyond Stale; the waiter gets it after the release, not before.
func TestLiveHolderIsNeverTakenOver(t *testing.T) {
	name := filepath.Join(t.TempDir(), "x.lock")
	opt := Options{Mode: Exclusive, Stale: 150 * time.Millisecond}
	l, err := Acquire(context.Background(), name, opt)
	if err != nil {
		t.Fatal(err)
	}
	var released atomic.Bool
	done := make(chan error)
	go func() {
		w, err := Acquire(context.Background(), name, opt)
		if err == nil {
			if !released.Load() {
				err = errors.New("the waiter took a live holder's lock")
			}
			w.Release()
		}
		done <- err
	}()
	time.Sleep(5 * opt.Stale) // well past Stale: only the heartbeat keeps it
	released.Store(true)
	l.Release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func writeOwner(t *testing.T, name string, o owner) {
	t.Helper()
	b, _ := json.Marshal(o)
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A lock whose owner is a process of this host that has exited is taken
// over at once, long before Stale.
func TestDeadOwnerIsTakenOver(t *testing.T) {
	name := filepath.Join(t.TempDir(), "x.lock")
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("no true(1) to make a dead PID with")
	}
	host, _ := os.Hostname()
	writeOwner(t, name, owner{Host: host, PID: cmd.Process.Pid, Token: "gone"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := Acquire(ctx, name, Options{Mode: Exclusive, Stale: time.Hour})
	if err != nil {
		t.Fatalf("a dead holder's lock was not taken over: %v", err)
	}
	l.Release()
}

// A lock of another node that stops changing is taken over after Stale
// (the node crashed); until then the waiter waits.
func TestStaleLockOfAnotherHostIsTakenOver(t *testing.T) {
	name := filepath.Join(t.TempDir(), "x.lock")
	writeOwner(t, name, owner{Host: "another-node", PID: 1, Token: "crashed"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	_, err := Acquire(ctx, name, Options{Mode: Exclusive, Stale: time.Hour})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a fresh lock of another node was not waited for: %v", err)
	}
	waited := false
	l, err := Acquire(context.Background(), name, Options{Mode: Exclusive, Stale: 100 * time.Millisecond, Waiting: func() { waited = true }})
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	if !waited {
		t.Error("Waiting was not called")
	}
}

// A link planted at the lock's name is never followed: its target stays
// as it was, and the lock is taken.
func TestPlantedLinkIsNotFollowed(t *testing.T) {
	for _, m := range modes(t) {
		t.Run(m.String(), func(t *testing.T) {
			dir := t.TempDir()
			victim := filepath.Join(dir, "victim")
			os.WriteFile(victim, []byte("precious"), 0o644)
			name := filepath.Join(dir, "x.lock")
			if err := os.Symlink(victim, name); err != nil {
				t.Skip(err)
			}
			l, err := Acquire(context.Background(), name, Options{Mode: m, Stale: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			l.Release()
			if b, _ := os.ReadFile(victim); string(b) != "precious" {
				t.Fatalf("the link's target was written: %q", b)
			}
		})
	}
}

func TestCancelWhileWaiting(t *testing.T) {
	for _, m := range modes(t) {
		t.Run(m.String(), func(t *testing.T) {
			name := filepath.Join(t.TempDir(), "x.lock")
			l, err := Acquire(context.Background(), name, Options{Mode: m})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Release()
			ctx, cancel := context.WithCancel(context.Background())
			go func() { time.Sleep(50 * time.Millisecond); cancel() }()
			if _, err := Acquire(ctx, name, Options{Mode: m}); !errors.Is(err, context.Canceled) {
				t.Fatalf("got %v, want context.Canceled", err)
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	for s, want := range map[string]Mode{"": Auto, "auto": Auto, "flock": Flock, "file": Exclusive, " FILE ": Exclusive} {
		if m, err := ParseMode(s); err != nil || m != want {
			t.Errorf("ParseMode(%q) = %v, %v", s, m, err)
		}
	}
	if _, err := ParseMode("nfs"); err == nil {
		t.Error("ParseMode(nfs) did not fail")
	}
	// A local temporary directory is not a shared file system.
	if runtime := ModeFor(filepath.Join(t.TempDir(), "x")); flockSupported && runtime != Flock {
		t.Logf("auto picks %v for the temporary directory", runtime)
	}
}
