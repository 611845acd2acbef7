package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/term"

	suggestpkg "github.com/ucphhpc/gen-vm-image-go/internal/suggest"
)

// command is one subcommand, defined once: its --help, its usage line, the
// man page and the shell completions are all made from this, and run gets
// the command line parsed against it.
type command struct {
	name    string
	summary string // one line, for the list of commands
	// description is reflowed to the terminal's width; paragraphs are
	// separated by blank lines.
	description string
	args        []positional
	options     []option
	// epilog is printed as written after the options: examples, tables.
	epilog string
	// hidden commands work but are not listed (none yet).
	run func(ctx context.Context, e env, p *parsed) int
}

// positional is a positional argument.
type positional struct {
	name     string
	help     string
	optional bool // may be left out
	many     bool // takes all the remaining arguments
	complete string
}

// What a value is, for shell completion.
const (
	completeFile   = "file"
	completeDir    = "dir"
	completeFormat = "format" // a format name the registry knows
)

// usage is the command's usage line, wrapped to width as argparse wraps
// it: continuation lines start under the first option.
func (c command) usage(width int) string {
	prefix := fmt.Sprintf("usage: %s %s ", prog, c.name)
	items := append([]string{"[-h]"}, usageItems(c.options)...)
	for _, a := range c.args {
		switch {
		case a.many && a.optional:
			items = append(items, "["+a.name+" ...]")
		case a.many:
			items = append(items, a.name, "["+a.name+" ...]")
		case a.optional:
			items = append(items, "["+a.name+"]")
		default:
			items = append(items, a.name)
		}
	}
	return fill(prefix, items, width)
}

// fill lays items out after prefix, wrapping before width with
// continuation lines indented to the prefix (or by 4 when the prefix
// takes most of the line).
func fill(prefix string, items []string, width int) string {
	indent := len(prefix)
	if indent > width/2 {
		indent = 4
	}
	var b strings.Builder
	b.WriteString(prefix)
	col := len(prefix)
	for i, it := range items {
		if i > 0 && col+1+len(it) > width {
			b.WriteString("\n" + strings.Repeat(" ", indent))
			col = indent
		} else if i > 0 {
			b.WriteByte(' ')
			col++
		}
		b.WriteString(it)
		col += len(it)
	}
	return b.String() + "\n"
}

// help is the command's --help.
func (c command) help(width int) string {
	var b strings.Builder
	b.WriteString(c.usage(width))
	if c.description != "" {
		b.WriteString("\n" + reflow(c.description, width, "") + "\n")
	}
	if len(c.args) > 0 {
		b.WriteString("\npositional arguments:\n")
		for _, a := range c.args {
			b.WriteString(helpItem("  "+a.name, a.help, width))
		}
	}
	b.WriteString("\noptions:\n")
	b.WriteString(helpItem("  -h, --help", "show this help message and exit", width))
	b.WriteString(formatOptions(c.options, width))
	if c.epilog != "" {
		b.WriteString("\n" + c.epilog)
	}
	return b.String()
}

// helpColumn is where option help starts, as in argparse.
const helpColumn = 24

// helpItem lays out one option or argument: its head, then its help
// reflowed from helpColumn to width (on the next line when the head is
// too long).
func helpItem(head, help string, width int) string {
	body := reflow(help, width, strings.Repeat(" ", helpColumn))
	if len(head) <= helpColumn-2 {
		return head + strings.Repeat(" ", helpColumn-len(head)) + strings.TrimPrefix(body, strings.Repeat(" ", helpColumn)) + "\n"
	}
	return head + "\n" + body + "\n"
}

// reflow joins the lines of each paragraph of text and wraps it to width,
// every line starting with indent. Paragraphs are separated by blank lines.
func reflow(text string, width int, indent string) string {
	var out []string
	for _, para := range strings.Split(strings.TrimSpace(text), "\n\n") {
		words := strings.Fields(para)
		line := indent
		for _, w := range words {
			if len(line) > len(indent) && len(line)+1+len(w) > width {
				out = append(out, line)
				line = indent
			}
			if len(line) > len(indent) {
				line += " "
			}
			line += w
		}
		out = append(out, line, "")
	}
	return strings.Join(out[:len(out)-1], "\n")
}

// width is how wide help is laid out: $COLUMNS when set (as argparse
// reads it), else the terminal's, else 80; never under 40.
func (e env) width() int {
	w := 80
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 0 {
		w = n
	} else if f, ok := e.stdout.(*os.File); ok {
		if n, _, err := term.GetSize(int(f.Fd())); err == nil && n > 0 {
			w = n
		}
	}
	return max(w-2, 40) // argparse leaves two columns free
}

// invoke parses args against the command and runs it: -h prints the help,
// a usage error its message (with a "did you mean" when one fits), and a
// wrong number of positional arguments says which are missing or extra.
func (c command) invoke(ctx context.Context, e env, args []string) int {
	p, err := parseArgs(args, c.options)
	if err != nil {
		return c.fail(e, err)
	}
	if p.help {
		fmt.Fprint(e.stdout, c.help(e.width()))
		return 0
	}
	if err := c.checkPositionals(p.positionals); err != nil {
		return c.fail(e, err)
	}
	return c.run(ctx, e, p)
}

func (c command) checkPositionals(got []string) error {
	var required []string
	max := 0
	for _, a := range c.args {
		if !a.optional {
			required = append(required, a.name)
		}
		if a.many {
			max = -1
		} else if max >= 0 {
			max++
		}
	}
	if len(got) < len(required) {
		return fmt.Errorf("the following arguments are required: %s", strings.Join(required[len(got):], ", "))
	}
	if max >= 0 && len(got) > max {
		return fmt.Errorf("unrecognized arguments: %s", strings.Join(got[max:], " "))
	}
	return nil
}

// fail prints an argparse-style usage error and returns its exit code, 2.
func (c command) fail(e env, err error) int {
	fmt.Fprintf(e.stderr, "%s%s %s: error: %v\n", c.usage(e.width()), prog, c.name, err)
	return 2
}

// suggest is the "did you mean" of a mistyped command, option or choice.
func suggest(typed string, candidates []string) string { return suggestpkg.Closest(typed, candidates) }

// More kinds of values, for shell completion.
const (
	completeWritable  = "writable"  // a format the registry can write
	completeAlgorithm = "algorithm" // a checksum algorithm
	completeShell     = "shell"     // bash, zsh or fish
)
