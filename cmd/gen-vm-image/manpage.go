package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	genvm "github.com/ucphhpc/gen-vm-image-go"
)

func manCommand() command {
	return command{
		name:    "man",
		summary: "Print the manual page (roff), made from the same definitions as --help",
		description: `Print gen-vm-image's manual page in roff, for man(1). It is made from the
same definitions as --help, so it always matches this version.`,
		epilog: `To read it:     gen-vm-image man | man -l -
To install it:  gen-vm-image man > /usr/local/share/man/man1/gen-vm-image.1
`,
		run: func(ctx context.Context, e env, p *parsed) int { writeMan(e.stdout); return 0 },
	}
}

// roff escapes text for a roff line: backslashes, and a leading dot or
// quote that would make it a request.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// roffText is a paragraph of help: its lines joined, escaped.
func roffText(s string) string { return roff(strings.Join(strings.Fields(s), " ")) }

// roffVerbatim prints text as written (examples, tables).
func roffVerbatim(w io.Writer, text string) {
	fmt.Fprintln(w, ".nf")
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		fmt.Fprintln(w, roff(line))
	}
	fmt.Fprintln(w, ".fi")
}

func writeMan(w io.Writer) {
	fmt.Fprintf(w, ".TH GEN-VM-IMAGE 1 \"\" \"gen-vm-image %s\" \"User Commands\"\n", genvm.Version)
	fmt.Fprintf(w, ".SH NAME\ngen\\-vm\\-image \\- generate virtual machine disk images\n")
	fmt.Fprintln(w, ".SH SYNOPSIS")
	for i, c := range commands() {
		if i > 0 {
			fmt.Fprintln(w, ".br")
		}
		fmt.Fprintf(w, ".B gen\\-vm\\-image %s\n%s\n", c.name, roff(strings.TrimSpace(strings.TrimPrefix(
			strings.Join(strings.Fields(c.usage(1<<20)), " "), "usage: "+prog+" "+c.name))))
	}
	fmt.Fprintln(w, ".SH DESCRIPTION")
	fmt.Fprintln(w, roffText(topDescription))
	fmt.Fprintln(w, ".PP\nThe global options are \\fB\\-h\\fR, \\fB\\-\\-help\\fR (show the help) and \\fB\\-V\\fR, \\fB\\-\\-version\\fR (print the version, the commit and the Go that built it).")
	for _, c := range commands() {
		fmt.Fprintf(w, ".SH %s\n", strings.ToUpper(c.name))
		for i, para := range strings.Split(strings.TrimSpace(c.description), "\n\n") {
			if i > 0 {
				fmt.Fprintln(w, ".PP")
			}
			fmt.Fprintln(w, roffText(para))
		}
		for _, a := range c.args {
			fmt.Fprintf(w, ".TP\n.I %s\n%s\n", roff(a.name), roffText(a.help))
		}
		for _, o := range c.options {
			var forms []string
			for _, f := range o.forms() {
				name, value, _ := strings.Cut(f, " ")
				form := `\fB` + roff(name) + `\fR`
				if value != "" {
					form += ` \fI` + roff(value) + `\fR`
				}
				forms = append(forms, form)
			}
			fmt.Fprintf(w, ".TP\n%s\n%s\n", strings.Join(forms, ", "), roffText(o.help))
		}
		if c.epilog != "" {
			fmt.Fprintln(w, ".PP")
			roffVerbatim(w, c.epilog)
		}
	}
	fmt.Fprintln(w, `.SH EXIT STATUS
single, multiple, convert and json print one JSON result and exit with its return_code:`)
	for _, c := range [][2]string{
		{"0", "success (also when an existing image was kept)"},
		{"1", "path not found"},
		{"2", "failed to load a file (an image we cannot read, or refuse as unsafe); a usage error"},
		{"3", "failed to create a path, or to create or convert an image"},
		{"4", "missing attribute"},
		{"5", "invalid attribute type or value"},
		{"6", "checksum mismatch"},
		{"7", "resize refused"},
		{"8", "the written image failed its consistency check"},
		{"9", "JSON error"},
		{"10", "download error"},
		{"130", "interrupted by SIGINT (143: by SIGTERM), after cleaning up"},
	} {
		fmt.Fprintf(w, ".TP\n.B %s\n%s\n", c[0], roff(c[1]))
	}
	fmt.Fprintln(w, `.PP
check exits as qemu\-img check does: 0 clean, 1 the check could not complete, 2 corruption, 3 leaks only, 63 the format has no check.
.SH ENVIRONMENT
.TP
.B GVI_CACHE_DIR
The download cache, when \-\-cache\-dir is not given.
.TP
.B XDG_CACHE_HOME
The cache is $XDG_CACHE_HOME/gen\-vm\-image (else ~/.cache/gen\-vm\-image) when neither is given.
.TP
.B COLUMNS
The width help is laid out to (else the terminal's).
.SH SEE ALSO
.BR qemu\-img (1)`)
}
