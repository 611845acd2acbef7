package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	genvm "github.com/ucphhpc/gen-vm-image-go"
	"github.com/ucphhpc/gen-vm-image-go/size"
)

// progressBar draws one line on a terminal, at most ten times a second,
// never wider than the terminal (asked at every redraw, so that a resize
// is followed): a line that wrapped would leave a copy of itself on the
// screen at every redraw. A new stage or image ends the line and starts
// another.
type progressBar struct {
	w       io.Writer
	width   func() int // the terminal's columns
	last    time.Time
	start   time.Time
	key     string // image and stage of the current line
	drawn   bool
	lastLen int
}

func newProgressBar(w io.Writer) *progressBar {
	b := &progressBar{w: w, width: func() int { return 80 }}
	if f, ok := w.(*os.File); ok {
		b.width = func() int {
			if n, _, err := term.GetSize(int(f.Fd())); err == nil && n > 0 {
				return n
			}
			return 80
		}
	}
	return b
}

func (b *progressBar) update(ev genvm.Event) {
	now := time.Now()
	if key := fmt.Sprint(ev.Index, ev.Image, ev.Stage); key != b.key {
		b.finish()
		b.key, b.start, b.drawn, b.lastLen = key, now, false, 0
	}
	complete := ev.Total > 0 && ev.Done >= ev.Total
	if now.Sub(b.last) < 100*time.Millisecond && !complete {
		return
	}
	b.last = now
	b.draw(b.line(now, ev, b.width()-1))
}

// line is the progress line for ev in at most width columns. What does not
// fit goes, least useful first: the bar shrinks and goes, the image name
// is shortened, the rate goes, then the sizes.
func (b *progressBar) line(now time.Time, ev genvm.Event, width int) string {
	prefix := ev.Stage
	if ev.Count > 0 {
		prefix = fmt.Sprintf("[%d/%d] %s", ev.Index, ev.Count, ev.Stage)
	}
	name := ev.Image
	pct, sizes := "", size.Format(ev.Done)
	if ev.Total > 0 {
		pct = fmt.Sprintf("%5.1f%%", float64(ev.Done)*100/float64(ev.Total))
		sizes += "/" + size.Format(ev.Total)
	}
	rate, eta := b.rate(now, ev)
	for _, drop := range []string{"", "rate", "sizes", "eta", "pct"} {
		switch drop {
		case "rate":
			rate = ""
		case "sizes":
			sizes = ""
		case "eta":
			eta = ""
		case "pct":
			pct = ""
		}
		tail := join(pct, sizes, rate, eta)
		fixed := cols(prefix) + 1 + cols(tail) + 1
		room := width - fixed
		if room < 8 { // not even a shortened name and no bar
			continue
		}
		shown := shortenMiddle(name, room)
		if ev.Total > 0 {
			if barWidth := min(30, room-cols(shown)-3); barWidth >= 10 {
				return join(prefix, shown, bar(barWidth, ev.Done, ev.Total), tail)
			}
		}
		return join(prefix, shown, tail)
	}
	return shortenMiddle(join(prefix, name), width)
}

func join(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, " ")
}

func bar(width int, done, total int64) string {
	filled := int(float64(width) * float64(done) / float64(total))
	filled = min(max(filled, 0), width)
	return "[" + strings.Repeat("=", filled) + strings.Repeat(" ", width-filled) + "]"
}

// cols is how many columns s takes (one per rune: image names and our
// text have no wide characters worth more care).
func cols(s string) int { return utf8.RuneCountInString(s) }

// shortenMiddle cuts s to n columns, keeping both ends ("deb…amd64.qcow2").
func shortenMiddle(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	if n < 4 {
		return string(r[:max(n, 0)])
	}
	head := (n - 1) / 2
	return string(r[:head]) + "…" + string(r[len(r)-(n-1-head):])
}

// rate is "12 MiB/s" and eta "ETA 3s" once a stage has run long enough to
// tell. When converting, the ETA counts the input's data that is left, not
// its virtual size: holes and zero runs go by in no time.
func (b *progressBar) rate(now time.Time, ev genvm.Event) (rate, eta string) {
	el := now.Sub(b.start).Seconds()
	if el <= 0.2 {
		return "", ""
	}
	bps := float64(ev.Done) / el
	rate = size.Format(int64(bps)) + "/s"
	left := -1.0
	switch {
	case ev.Total > 0 && ev.Done >= ev.Total:
	case ev.DataTotal >= 0 && ev.Data > 0:
		left = float64(ev.DataTotal-ev.Data) / (float64(ev.Data) / el)
	case ev.Total > 0 && bps > 0:
		left = float64(ev.Total-ev.Done) / bps
	}
	if left >= 0 {
		eta = "ETA " + (time.Duration(left) * time.Second).Round(time.Second).String()
	}
	return rate, eta
}

// draw replaces the current line with line.
func (b *progressBar) draw(line string) {
	pad := ""
	if n := b.lastLen - cols(line); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	fmt.Fprintf(b.w, "\r%s%s", line, pad)
	b.lastLen = cols(line)
	b.drawn = true
}

// finish ends the current line, so that what follows starts on its own.
func (b *progressBar) finish() {
	if b.drawn {
		fmt.Fprintln(b.w)
		b.drawn = false
	}
}
