//go:build linux

package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair of cols columns: the master, read
// by the test, and the slave, a terminal for the program (no dependency:
// /dev/ptmx and two ioctls).
func openPTY(t *testing.T, cols int) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(filepath.Join("/dev/pts", strconv.Itoa(n)), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: uint16(cols)}); err != nil {
		t.Fatal(err)
	}
	// Raw output: no "\n" to "\r\n" translation to undo.
	tio, err := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS)
	if err == nil {
		tio.Oflag &^= unix.OPOST
		unix.IoctlSetTermios(int(s.Fd()), unix.TCSETS, tio)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// screenLines replays what a program wrote to a terminal: "\r" goes back
// to the start of the line, "\n" starts a new one. It returns the lines
// left on the screen and the widest thing ever drawn on one line.
func screenLines(out []byte) (lines []string, widest int) {
	var cur []rune
	col := 0
	for _, r := range string(out) {
		switch r {
		case '\r':
			col = 0
		case '\n':
			lines = append(lines, string(cur))
			cur, col = nil, 0
		default:
			if col < len(cur) {
				cur[col] = r
			} else {
				cur = append(cur, r)
			}
			col++
			widest = max(widest, col)
		}
	}
	if len(cur) > 0 {
		lines = append(lines, string(cur))
	}
	return lines, widest
}

// TestProgressFitsTheTerminal: on terminals of 80 and 200 columns, the
// progress line is never wider than the terminal, each stage leaves one
// line behind, and the JSON result starts on a line of its own.
func TestProgressFitsTheTerminal(t *testing.T) {
	dir := t.TempDir()
	_, qcow := patternImage(t, dir, 24<<20, true)
	long := filepath.Join(dir, strings.Repeat("a-rather-long-image-name-", 4)+"input.qcow2")
	if err := os.Rename(qcow, long); err != nil {
		t.Fatal(err)
	}
	for _, cols := range []int{80, 200} {
		t.Run(strconv.Itoa(cols)+" columns", func(t *testing.T) {
			master, slave := openPTY(t, cols)
			name := strings.Repeat("an-image-with-a-long-name-", 3) + "x"
			cmd := exec.Command(binary, "single", name, "1G", "-i", long, "-od", filepath.Join(dir, "out"), "--overwrite")
			cmd.Dir = dir
			cmd.Stderr = slave
			var stdout bytes.Buffer
			cmd.Stdout = &stdout
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			slave.Close()
			out, _ := io.ReadAll(master) // EIO once the program has exited
			if err := cmd.Wait(); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			lines, widest := screenLines(out)
			if widest > cols {
				t.Errorf("a line %d columns wide on a terminal of %d:\n%s", widest, cols, out)
			}
			if len(lines) == 0 || len(lines) > 1 {
				t.Errorf("%d lines left on the screen for one stage, want 1:\n%q", len(lines), lines)
			}
			for _, l := range lines {
				if !strings.HasPrefix(l, "convert ") || utf8.RuneCountInString(l) > cols {
					t.Errorf("line %q", l)
				}
			}
			if !strings.HasPrefix(stdout.String(), "{") {
				t.Errorf("stdout %q", stdout.String())
			}
		})
	}
	t.Run("failure", func(t *testing.T) {
		master, slave := openPTY(t, 80)
		cmd := exec.Command(binary, "single", "x", "1K", "-i", long, "-od", filepath.Join(dir, "out2"))
		cmd.Stderr = slave
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		slave.Close()
		out, _ := io.ReadAll(master)
		cmd.Wait()
		lines, _ := screenLines(out)
		if len(lines) == 0 || lines[0] != "{" {
			t.Errorf("the JSON result does not start a line of its own:\n%q", lines)
		}
	})
}

// TestJSONOnATerminal: json reading a terminal says that it waits for a
// request, and answers it once the request ends (Ctrl-D).
func TestJSONOnATerminal(t *testing.T) {
	dir := t.TempDir()
	master, slave := openPTY(t, 80)
	cmd := exec.Command(binary, "json")
	cmd.Dir = dir
	cmd.Stdin = slave
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	// Canonical mode: the line, then Ctrl-D at the start of a line ends it.
	master.Write([]byte(`{"name": "tty", "size": "1M"}` + "\n\x04"))
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "Waiting for a JSON request on stdin") || !strings.Contains(stdout.String(), `"status": "success"`) {
		t.Errorf("stderr %q, stdout %q", stderr.String(), stdout.String())
	}
}
