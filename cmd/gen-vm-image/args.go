package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ucphhpc/gen-vm-image-go/arch"
	"github.com/ucphhpc/gen-vm-image-go/disk"
)

// option is one command-line option, spelled as argparse spells them: any
// number of names, single-dash names may have several letters (-if, -icbs),
// long names may be abbreviated to a unique prefix, and values follow as
// the next argument or after '='.
type option struct {
	names   []string
	dest    string
	metavar string // empty for switches that take no value
	help    string
	// choices, when set, are the only values accepted (and completed).
	choices []string
	// complete says what a value is, for shell completion (completeFile, ...).
	complete string
}

func (o option) takesValue() bool { return o.metavar != "" }

// parsed is what a command line said.
type parsed struct {
	values      map[string]string
	switches    map[string]bool
	positionals []string
	help        bool
}

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// parseArgs reads args against opts; options and positionals may come in
// any order, "--" ends the options, and -h/--help anywhere asks for help.
func parseArgs(args []string, opts []option) (*parsed, error) {
	p := &parsed{values: map[string]string{}, switches: map[string]bool{}}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			p.positionals = append(p.positionals, args[i+1:]...)
			break
		}
		if a == "-h" || a == "--help" {
			p.help = true
			continue
		}
		if len(a) < 2 || a[0] != '-' || isNumber(a) {
			p.positionals = append(p.positionals, a)
			continue
		}
		name, value, hasValue := a, "", false
		if eq := strings.IndexByte(a, '='); eq > 0 {
			name, value, hasValue = a[:eq], a[eq+1:], true
		}
		o, err := findOption(name, opts)
		if err != nil {
			return nil, err
		}
		if !o.takesValue() {
			if hasValue {
				return nil, &usageError{fmt.Sprintf("argument %s: ignored explicit argument %q", strings.Join(o.names, "/"), value)}
			}
			p.switches[o.dest] = true
			continue
		}
		if !hasValue {
			if i+1 >= len(args) || (strings.HasPrefix(args[i+1], "-") && len(args[i+1]) > 1 && !isNumber(args[i+1])) {
				return nil, &usageError{fmt.Sprintf("argument %s: expected one argument", strings.Join(o.names, "/"))}
			}
			i++
			value = args[i]
		}
		if len(o.choices) > 0 && !slices.Contains(o.choices, value) {
			msg := fmt.Sprintf("argument %s: invalid choice: %q (choose from %s)", strings.Join(o.names, "/"), value, quoteAll(o.choices))
			if s := suggest(value, o.choices); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			return nil, &usageError{msg}
		}
		p.values[o.dest] = value
	}
	return p, nil
}

func quoteAll(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// findOption matches an exact name first, then a unique prefix of a long
// name, as argparse's allow_abbrev does.
func findOption(name string, opts []option) (option, error) {
	for _, o := range opts {
		for _, n := range o.names {
			if n == name {
				return o, nil
			}
		}
	}
	var matches []option
	var spelled []string
	if strings.HasPrefix(name, "--") {
		for _, o := range opts {
			for _, n := range o.names {
				if strings.HasPrefix(n, "--") && strings.HasPrefix(n, name) {
					matches = append(matches, o)
					spelled = append(spelled, n)
					break
				}
			}
		}
	}
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		var all []string
		for _, o := range opts {
			all = append(all, o.names...)
		}
		msg := fmt.Sprintf("unrecognized arguments: %s", name)
		if s := suggest(name, append(all, "--help")); s != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", s)
		}
		return option{}, &usageError{msg}
	default:
		return option{}, &usageError{fmt.Sprintf("ambiguous option: %s could match %s", name, strings.Join(spelled, ", "))}
	}
}

func isNumber(s string) bool {
	if len(s) < 2 || s[0] != '-' {
		return false
	}
	for _, c := range s[1:] {
		if (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return true
}

// formatOptions renders option help the way argparse lays it out, the
// help reflowed to width.
func formatOptions(opts []option, width int) string {
	var b strings.Builder
	for _, o := range opts {
		b.WriteString(helpItem("  "+strings.Join(o.forms(), ", "), o.help, width))
	}
	return b.String()
}

// forms are the option's spellings with their value: "-i SINGLE_INPUT".
func (o option) forms() []string {
	var forms []string
	for _, n := range o.names {
		if o.takesValue() {
			forms = append(forms, n+" "+o.metavar)
		} else {
			forms = append(forms, n)
		}
	}
	return forms
}

// usageLine renders "[-i SINGLE_INPUT]" items for the usage line.
func usageItems(opts []option) []string {
	var items []string
	for _, o := range opts {
		if o.takesValue() {
			items = append(items, fmt.Sprintf("[%s %s]", o.names[0], o.metavar))
		} else {
			items = append(items, fmt.Sprintf("[%s]", o.names[0]))
		}
	}
	return items
}

// outputFormatHelp is the help of an output format option: what, the
// formats the registry can write, and the default.
func outputFormatHelp(what string) string {
	return what + ": " + writableFormats(false) + ". (default: " + arch.DefaultFormat + ")"
}

// writableFormats lists, for help texts, the formats the registry can write:
// "qcow2 or raw", or "qcow2 (default) or raw" when markDefault is set.
func writableFormats(markDefault bool) string {
	names := disk.WritableFormats()
	for i, n := range names {
		if markDefault && n == arch.DefaultFormat {
			names[i] += " (default)"
		}
		if f, _ := disk.Lookup(n); len(f.Aliases) > 0 {
			names[i] += " (also " + strings.Join(f.Aliases, ", ") + ")"
		}
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}
