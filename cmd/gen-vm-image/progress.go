package main

import (
	"fmt"
	"io"
	"time"

	genvm "github.com/ucphhpc/gen-vm-image-go"
	"github.com/ucphhpc/gen-vm-image-go/size"
)

// progressBar draws one line on a terminal, at most ten times a second.
type progressBar struct {
	w       io.Writer
	last    time.Time
	start   time.Time
	image   string
	stage   string
	drawn   bool
	lastLen int
}

func newProgressBar(w io.Writer) *progressBar { return &progressBar{w: w} }

func (b *progressBar) update(ev genvm.Event) {
	now := time.Now()
	if ev.Image != b.image || ev.Stage != b.stage {
		if b.drawn {
			fmt.Fprintln(b.w)
		}
		b.image, b.stage, b.start, b.drawn = ev.Image, ev.Stage, now, false
	}
	if now.Sub(b.last) < 100*time.Millisecond && (ev.Total <= 0 || ev.Done < ev.Total) {
		return
	}
	b.last = now
	if ev.Total <= 0 { // a download whose size the server did not say
		b.draw(fmt.Sprintf("%s %s %s %s", ev.Stage, ev.Image, size.Format(ev.Done), b.rate(now, ev)))
		return
	}
	pct := 100.0
	if ev.Total > 0 {
		pct = float64(ev.Done) * 100 / float64(ev.Total)
	}
	const width = 30
	filled := int(pct / 100 * width)
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = ' '
		if i < filled {
			bar[i] = '='
		}
	}
	line := fmt.Sprintf("%s %s [%s] %5.1f%% %s/%s %s", ev.Stage, ev.Image, bar, pct,
		size.Format(ev.Done), size.Format(ev.Total), b.rate(now, ev))
	b.draw(line)
}

// rate is "12 MiB/s ETA 3s" once a stage has run long enough to tell.
func (b *progressBar) rate(now time.Time, ev genvm.Event) string {
	rate := ""
	if el := now.Sub(b.start).Seconds(); el > 0.2 {
		bps := float64(ev.Done) / el
		rate = size.Format(int64(bps)) + "/s"
		if bps > 0 && ev.Done < ev.Total {
			eta := time.Duration(float64(ev.Total-ev.Done)/bps) * time.Second
			rate += " ETA " + eta.Round(time.Second).String()
		}
	}
	return rate
}

// draw replaces the current line with line.
func (b *progressBar) draw(line string) {
	pad := ""
	if n := b.lastLen - len(line); n > 0 {
		pad = fmt.Sprintf("%*s", n, "")
	}
	fmt.Fprintf(b.w, "\r%s%s", line, pad)
	b.lastLen = len(line)
	b.drawn = true
}

func (b *progressBar) finish() {
	if b.drawn {
		fmt.Fprintln(b.w)
	}
}
