package filelock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"
)

// owner is what an Exclusive lock file holds.
type owner struct {
	Host  string `json:"host"`
	PID   int    `json:"pid"`
	Token string `json:"token"`
}

// state is what a waiter saw of a lock file: when it stops changing for
// Stale, the holder is gone.
type state struct {
	exists  bool
	regular bool
	mtime   time.Time
	size    int64
	info    fs.FileInfo // its identity, for os.SameFile
	seen    time.Time   // when it was first seen so, on the waiter's monotonic clock
}

func acquireExclusive(ctx context.Context, name string, opt Options) (*Lock, error) {
	host, _ := os.Hostname()
	me := owner{Host: host, PID: os.Getpid(), Token: token()}
	record, _ := json.Marshal(me)
	told := false
	var last state
	poll := min(50*time.Millisecond, opt.Stale/10)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|noFollow, 0o644)
		if err == nil {
			_, werr := f.Write(append(record, '\n'))
			if werr == nil {
				werr = f.Sync()
			}
			f.Close()
			if werr != nil {
				os.Remove(name)
				return nil, werr
			}
			return holdExclusive(name, me.Token, opt.Stale), nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		now := observe(name)
		switch {
		case !now.exists:
			continue // released between our create and our look
		case !sameState(last, now):
			last = now
		}
		if !now.regular || deadOwner(name, host) || time.Since(last.seen) >= opt.Stale {
			if err := breakStale(ctx, name, last, opt.Stale); err != nil {
				return nil, err
			}
			last = state{}
			continue
		}
		if !told && opt.Waiting != nil {
			opt.Waiting()
			told = true
		}
		if err := sleep(ctx, poll); err != nil {
			return nil, err
		}
	}
}

// holdExclusive touches the lock file while it is held, and removes it on
// release if it is still ours.
func holdExclusive(name, tok string, stale time.Duration) *Lock {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(stale / 6)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if ours(name, tok) {
					touch(name)
				}
			}
		}
	}()
	return &Lock{release: func() {
		close(stop)
		wg.Wait()
		if ours(name, tok) {
			os.Remove(name)
		}
	}}
}

// breakStale removes the lock file a waiter judged stale, under a second,
// short-lived lock (NAME.break) so that two waiters never both remove a
// lock, the second one the first has just taken. A .break left by a
// waiter that died while breaking is itself stale after Stale.
func breakStale(ctx context.Context, name string, judged state, stale time.Duration) error {
	brk := name + ".break"
	for {
		f, err := os.OpenFile(brk, os.O_WRONLY|os.O_CREATE|os.O_EXCL|noFollow, 0o644)
		if err == nil {
			f.Close()
			break
		}
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
		if st, err := os.Lstat(brk); err == nil && time.Since(st.ModTime()) > stale {
			os.Remove(brk)
			continue
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
	defer os.Remove(brk)
	// Still the file we judged? Another waiter may have broken it and
	// taken the lock since.
	if now := observe(name); now.exists && (judged.info == nil || sameState(judged, now)) {
		return removeAny(name)
	}
	return nil
}

func observe(name string) state {
	st, err := os.Lstat(name)
	if err != nil {
		return state{}
	}
	return state{exists: true, regular: st.Mode().IsRegular(), mtime: st.ModTime(), size: st.Size(), info: st, seen: time.Now()}
}

func sameState(a, b state) bool {
	return a.info != nil && b.info != nil && os.SameFile(a.info, b.info) && a.mtime.Equal(b.mtime) && a.size == b.size
}

// readOwner reads a lock file's owner without following a link, at most
// 4 KiB of it.
func readOwner(name string) (owner, bool) {
	f, err := os.OpenFile(name, os.O_RDONLY|noFollow|nonBlock, 0)
	if err != nil {
		return owner{}, false
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return owner{}, false
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	var o owner
	if err != nil || json.Unmarshal(b, &o) != nil {
		return owner{}, false
	}
	return o, true
}

func ours(name, tok string) bool {
	o, ok := readOwner(name)
	return ok && o.Token == tok
}

// deadOwner: the lock's owner is a process of this host that is gone.
func deadOwner(name, host string) bool {
	o, ok := readOwner(name)
	return ok && host != "" && o.Host == host && o.PID > 0 && !processAlive(o.PID)
}

func removeAny(name string) error {
	if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func token() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
