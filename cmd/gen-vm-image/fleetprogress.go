package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	genvm "github.com/ucphhpc/gen-vm-image-go"
	"github.com/ucphhpc/gen-vm-image-go/size"
)

// fleetProgress draws the progress of a build on a terminal: one line per
// image at work (its stage, bytes, rate and ETA, as the progress of one
// image) and a total line under them, redrawn in place at most ten times a
// second, each line within the terminal's width and the block within its
// height. Events come from several jobs at once.
type fleetProgress struct {
	w      io.Writer
	width  func() int
	height func() int

	mu      sync.Mutex
	start   time.Time
	last    time.Time
	running map[int]*imageLine // by Event.Index
	count   int
	ended   map[string]int // "done", "kept", "failed": how many
	bytes   int64          // converted by the images that ended
	drawn   int            // lines on the screen now
}

// imageLine is the state of one image at work.
type imageLine struct {
	bar progressBar // its stage's start, for the rate and the ETA
	ev  genvm.Event
}

func newFleetProgress(w io.Writer) *fleetProgress {
	p := &fleetProgress{w: w, width: func() int { return 80 }, height: func() int { return 24 },
		running: map[int]*imageLine{}, ended: map[string]int{}, start: time.Now()}
	if f, ok := w.(*os.File); ok {
		p.width = func() int {
			if n, _, err := term.GetSize(int(f.Fd())); err == nil && n > 0 {
				return n
			}
			return 80
		}
		p.height = func() int {
			if _, n, err := term.GetSize(int(f.Fd())); err == nil && n > 0 {
				return n
			}
			return 24
		}
	}
	return p
}

func (p *fleetProgress) update(ev genvm.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	p.count = max(p.count, ev.Count)
	switch ev.Stage {
	case "done", "kept", "failed":
		if l := p.running[ev.Index]; l != nil {
			if l.ev.Stage == "convert" {
				p.bytes += l.ev.Done
			}
			delete(p.running, ev.Index)
		}
		p.ended[ev.Stage]++
		p.draw(now)
		return
	}
	l := p.running[ev.Index]
	if l == nil || l.ev.Stage != ev.Stage {
		if l != nil && l.ev.Stage == "convert" {
			p.bytes += l.ev.Done
		}
		l = &imageLine{bar: progressBar{start: now}}
		p.running[ev.Index] = l
	}
	l.ev = ev
	if now.Sub(p.last) >= 100*time.Millisecond {
		p.draw(now)
	}
}

// lines are what the block shows: the images at work in the build's
// order (as many as fit above the total), then the total.
func (p *fleetProgress) lines(now time.Time, width, height int) []string {
	var indexes []int
	for i := range p.running {
		indexes = append(indexes, i)
	}
	slices.Sort(indexes)
	room := max(height-2, 1) // the total, and the line the cursor is on
	var out []string
	for n, i := range indexes {
		if n == room-1 && len(indexes) > room {
			out = append(out, shortenMiddle(fmt.Sprintf("… and %d more", len(indexes)-n), width))
			break
		}
		l := p.running[i]
		out = append(out, l.bar.line(now, l.ev, width))
	}
	return append(out, p.total(now, width))
}

// total is "total 3/8 (2 at work, 1 failed) 1.2 GiB 40 MiB/s": the images
// that ended of all, the bytes converted so far and their rate.
func (p *fleetProgress) total(now time.Time, width int) string {
	ended := p.ended["done"] + p.ended["kept"] + p.ended["failed"]
	head := fmt.Sprintf("total %d/%d", ended, p.count)
	var notes []string
	if len(p.running) > 0 {
		notes = append(notes, fmt.Sprintf("%d at work", len(p.running)))
	}
	if n := p.ended["failed"]; n > 0 {
		notes = append(notes, fmt.Sprintf("%d failed", n))
	}
	if len(notes) > 0 {
		head += " (" + strings.Join(notes, ", ") + ")"
	}
	converted := p.bytes
	for _, l := range p.running {
		if l.ev.Stage == "convert" {
			converted += l.ev.Done
		}
	}
	rate := ""
	if el := now.Sub(p.start).Seconds(); el > 0.2 {
		rate = size.Format(int64(float64(converted)/el)) + "/s"
	}
	for _, tail := range []string{join(size.Format(converted), rate), size.Format(converted), ""} {
		if line := join(head, tail); cols(line) <= width {
			return line
		}
	}
	return shortenMiddle(head, width)
}

// draw replaces the block on the screen: up to its first line, each line
// rewritten and the rest of it cleared, and the lines of a taller block
// before cleared too.
func (p *fleetProgress) draw(now time.Time) {
	p.last = now
	lines := p.lines(now, p.width()-1, p.height())
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.drawn)
	}
	for _, l := range lines {
		b.WriteString("\r" + l + "\x1b[K\n")
	}
	for range p.drawn - len(lines) {
		b.WriteString("\r\x1b[K\n")
	}
	if extra := p.drawn - len(lines); extra > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", extra)
	}
	io.WriteString(p.w, b.String())
	p.drawn = len(lines)
}

// finish takes the block off the screen, so that the summary and the
// result follow the lines before it.
func (p *fleetProgress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\x1b[%dA", p.drawn)
	for range p.drawn {
		b.WriteString("\r\x1b[K\n")
	}
	fmt.Fprintf(&b, "\x1b[%dA", p.drawn)
	io.WriteString(p.w, b.String())
	p.drawn = 0
}

// summaryTable is the table printed after a build on a terminal: per
// image, in the file's order, how it ended, how long it took and the
// space its file takes; then the images a stop kept from being built.
func summaryTable(res *genvm.BuildResult, width int) string {
	rows := [][]string{{"IMAGE", "RESULT", "TIME", "SIZE"}}
	for i, im := range slices.Concat(res.Images, res.NotBuilt) {
		result, took, space := "built", "", ""
		notBuilt := i >= len(res.Images)
		switch {
		case im.Stopped:
			result = "stopped"
		case notBuilt:
			result = "not started"
		case im.Err != nil:
			result = fmt.Sprintf("failed (%d)", genvm.CodeOf(im.Err))
		case !im.Created:
			result = "kept"
		}
		if im.Pushed != nil && im.Err == nil {
			result += ", pushed"
		}
		if im.Elapsed > 0 {
			took = im.Elapsed.Round(100 * time.Millisecond).String()
		}
		if st, err := os.Stat(im.Path); err == nil && im.Err == nil {
			space = size.FormatQemu(allocatedBytes(st)) // three digits, as qemu-img info gives them
		}
		name := im.Key
		if im.Path != "" {
			name = filepath.Base(im.Path)
		}
		rows = append(rows, []string{name, result, took, space})
	}
	widths := make([]int, 4)
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], cols(c))
		}
	}
	// The name column gives way when the table is wider than the terminal.
	if over := widths[0] + widths[1] + widths[2] + widths[3] + 6 - width; over > 0 {
		widths[0] = max(widths[0]-over, 8)
	}
	var b strings.Builder
	for _, r := range rows {
		name := shortenMiddle(r[0], widths[0])
		fmt.Fprintf(&b, "%s%s  %-*s  %*s  %*s\n", name, strings.Repeat(" ", widths[0]-cols(name)), widths[1], r[1], widths[2], r[2], widths[3], r[3])
	}
	return b.String()
}
