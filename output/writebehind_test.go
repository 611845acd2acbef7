package output

import (
	"runtime"
	"sync/atomic"
	"testing"
)

// TestWriteBehindKicksEveryStep: write-back is started once per step
// written (never more often, never in the writer's goroutine), and Stop
// waits for the last one.
func TestWriteBehindKicksEveryStep(t *testing.T) {
	var flushes atomic.Int32
	release := make(chan struct{})
	w := startWriteBehind(100, func() {
		<-release // a slow disk: the writer must not wait for it
		flushes.Add(1)
	})
	for done := int64(10); done <= 1000; done += 10 {
		w.Progress(done)
	}
	close(release)
	w.Stop()
	// Ten steps passed while the first flush was held: that one and at
	// most one pending kick ran, never ten.
	if n := flushes.Load(); n < 1 || n > 2 {
		t.Errorf("%d write-backs for 10 steps written while the first was blocked, want 1 or 2", n)
	}

	flushes.Store(0)
	w = startWriteBehind(100, func() { flushes.Add(1) })
	for done := int64(10); done <= 1000; done += 10 {
		w.Progress(done)
		for flushes.Load() < int32(done/100) { // let each kick run before the next
			runtime.Gosched()
		}
	}
	w.Stop()
	if n := flushes.Load(); n != 10 {
		t.Errorf("%d write-backs for 10 steps, want 10", n)
	}
}

func TestWriteBehindOff(t *testing.T) {
	w := &WriteBehind{}
	w.Progress(1 << 40)
	w.Stop()
}
