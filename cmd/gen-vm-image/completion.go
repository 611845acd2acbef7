package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/ucphhpc/gen-vm-image-go/checksum"
	"github.com/ucphhpc/gen-vm-image-go/disk"
)

func completionCommand() command {
	return command{
		name:    "completion",
		summary: "Print a shell completion script (bash, zsh or fish)",
		description: `Print a script that teaches a shell to complete gen-vm-image's commands,
options, formats and file names. It is made from the same definitions as
--help, so it always matches this version.`,
		args: []positional{{name: "shell", help: "bash, zsh or fish.", complete: completeShell}},
		epilog: `To use it:
  bash:  source <(gen-vm-image completion bash)          (in ~/.bashrc), or
         gen-vm-image completion bash > /etc/bash_completion.d/gen-vm-image
  zsh:   gen-vm-image completion zsh > "${fpath[1]}/_gen-vm-image"
         (then compinit)
  fish:  gen-vm-image completion fish \
           > ~/.config/fish/completions/gen-vm-image.fish
`,
		run: runCompletion,
	}
}

var shells = []string{"bash", "zsh", "fish"}

func runCompletion(ctx context.Context, e env, p *parsed) int {
	switch p.positionals[0] {
	case "bash":
		writeBash(e.stdout)
	case "zsh":
		writeZsh(e.stdout)
	case "fish":
		writeFish(e.stdout)
	default:
		err := fmt.Errorf("argument shell: invalid choice: %q (choose from %s)", p.positionals[0], quoteAll(shells))
		if s := suggest(p.positionals[0], shells); s != "" {
			err = fmt.Errorf("%v; did you mean %q?", err, s)
		}
		return completionCommand().fail(e, err)
	}
	return 0
}

// words is what a kind of value completes to, when it is a fixed list.
func words(kind string) []string {
	switch kind {
	case completeFormat:
		var names []string
		for _, f := range disk.Formats() {
			names = append(append(names, f.Name), f.Aliases...)
		}
		return names
	case completeWritable:
		return disk.WithAliases(disk.WritableFormats())
	case completeAlgorithm:
		return checksum.Names()
	case completeShell:
		return shells
	}
	return nil
}

// valueKind is what an option's value completes to: its choices, a kind,
// or "" (anything: nothing to offer).
func valueKind(o option) (kind string, list []string) {
	if len(o.choices) > 0 {
		return "list", o.choices
	}
	if l := words(o.complete); l != nil {
		return "list", l
	}
	return o.complete, nil
}

func allNames(opts []option) []string {
	names := []string{"-h", "--help"}
	for _, o := range opts {
		names = append(names, o.names...)
	}
	return names
}

func writeBash(w io.Writer) {
	fmt.Fprintf(w, "# bash completion for %s, made by '%s completion bash'.\n", prog, prog)
	fmt.Fprintf(w, "_gen_vm_image() {\n")
	fmt.Fprintf(w, "\tlocal cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n")
	fmt.Fprintf(w, "\tCOMPREPLY=()\n")
	fmt.Fprintf(w, "\tif [ \"$COMP_CWORD\" -eq 1 ]; then\n")
	fmt.Fprintf(w, "\t\tCOMPREPLY=($(compgen -W %q -- \"$cur\"))\n", strings.Join(append(commandNames(), "-h", "--help", "-V", "--version"), " "))
	fmt.Fprintf(w, "\t\treturn\n\tfi\n")
	fmt.Fprintf(w, "\tcase \"${COMP_WORDS[1]}\" in\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "\t%s)\n", c.name)
		fmt.Fprintf(w, "\t\tcase \"$prev\" in\n")
		for _, o := range c.options {
			if !o.takesValue() {
				continue
			}
			fmt.Fprintf(w, "\t\t%s)\n", strings.Join(o.names, "|"))
			switch kind, list := valueKind(o); kind {
			case "list":
				fmt.Fprintf(w, "\t\t\tCOMPREPLY=($(compgen -W %q -- \"$cur\"))\n", strings.Join(list, " "))
			case completeFile:
				fmt.Fprintf(w, "\t\t\tcompopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- \"$cur\"))\n")
			case completeDir:
				fmt.Fprintf(w, "\t\t\tcompopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- \"$cur\"))\n")
			}
			fmt.Fprintf(w, "\t\t\treturn ;;\n")
		}
		fmt.Fprintf(w, "\t\tesac\n")
		fmt.Fprintf(w, "\t\tif [[ \"$cur\" == -* ]]; then\n")
		fmt.Fprintf(w, "\t\t\tCOMPREPLY=($(compgen -W %q -- \"$cur\"))\n", strings.Join(allNames(c.options), " "))
		fmt.Fprintf(w, "\t\t\treturn\n\t\tfi\n")
		for _, a := range c.args {
			switch list := words(a.complete); {
			case list != nil:
				fmt.Fprintf(w, "\t\tCOMPREPLY=($(compgen -W %q -- \"$cur\"))\n", strings.Join(list, " "))
			case a.complete == completeFile:
				fmt.Fprintf(w, "\t\tcompopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- \"$cur\"))\n")
			default:
				continue
			}
			break
		}
		fmt.Fprintf(w, "\t\t;;\n")
	}
	fmt.Fprintf(w, "\tesac\n}\n")
	fmt.Fprintf(w, "complete -F _gen_vm_image %s\n", prog)
}

// zshQuote escapes text for an _arguments description.
func zshQuote(s string) string {
	s = firstSentence(s)
	r := strings.NewReplacer("'", `'\''`, "[", `\[`, "]", `\]`, ":", `\:`)
	return r.Replace(s)
}

// firstSentence is the start of a help text, for one-line descriptions.
func firstSentence(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if i := strings.Index(s, ". "); i > 0 {
		s = s[:i]
	}
	return strings.TrimSuffix(s, ".")
}

func zshAction(kind string, list []string) string {
	switch {
	case list != nil:
		return "(" + strings.Join(list, " ") + ")"
	case kind == completeFile:
		return "_files"
	case kind == completeDir:
		return "_files -/"
	}
	return " "
}

func writeZsh(w io.Writer) {
	fmt.Fprintf(w, "#compdef %s\n# zsh completion for %s, made by '%s completion zsh'.\n\n", prog, prog, prog)
	fmt.Fprintf(w, "_gen_vm_image() {\n\tlocal -a commands\n\tcommands=(\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "\t\t'%s:%s'\n", c.name, zshQuote(c.summary))
	}
	fmt.Fprintf(w, "\t)\n")
	fmt.Fprintf(w, "\tif (( CURRENT == 2 )); then\n\t\t_describe 'command' commands\n\t\treturn\n\tfi\n")
	// From here on the subcommand is the command _arguments completes for.
	fmt.Fprintf(w, "\tlocal cmd=${words[2]}\n\tshift words\n\t(( CURRENT-- ))\n")
	fmt.Fprintf(w, "\tcase $cmd in\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "\t%s)\n\t\t_arguments \\\n", c.name)
		fmt.Fprintf(w, "\t\t\t'(- *)'{-h,--help}'[show the help]' \\\n")
		for _, o := range c.options {
			excl := "(" + strings.Join(o.names, " ") + ")"
			spec := "'" + excl + "'{" + strings.Join(o.names, ",") + "}'[" + zshQuote(o.help) + "]"
			if len(o.names) == 1 {
				spec = "'" + excl + o.names[0] + "[" + zshQuote(o.help) + "]"
			}
			if o.takesValue() {
				kind, list := valueKind(o)
				spec += ":" + strings.ToLower(o.metavar) + ":" + zshAction(kind, list)
			}
			fmt.Fprintf(w, "\t\t\t%s' \\\n", spec)
		}
		for i, a := range c.args {
			pos := fmt.Sprint(i + 1)
			if a.many {
				pos = "*"
			}
			fmt.Fprintf(w, "\t\t\t'%s:%s:%s' \\\n", pos, a.name, zshAction(a.complete, words(a.complete)))
		}
		fmt.Fprintf(w, "\t\t\t&& return 0\n\t\t;;\n")
	}
	fmt.Fprintf(w, "\tesac\n}\n\nif [ \"$funcstack[1]\" = \"_gen_vm_image\" ]; then\n\t_gen_vm_image \"$@\"\nelse\n\tcompdef _gen_vm_image %s\nfi\n", prog)
}

// fishOption is how fish's complete names an option: -l for --long, and
// -o ("old style", matched whole) for every single-dash one: as a short
// option (-s), fish would read -icbs as -i with the value "cbs".
func fishOption(name string) string {
	if strings.HasPrefix(name, "--") {
		return "-l " + name[2:]
	}
	return "-o " + name[1:]
}

func fishQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `\'`) + "'" }

func writeFish(w io.Writer) {
	fmt.Fprintf(w, "# fish completion for %s, made by '%s completion fish'.\n", prog, prog)
	fmt.Fprintf(w, "complete -c %s -f\n", prog)
	fmt.Fprintf(w, "complete -c %s -n __fish_use_subcommand -s h -l help -d 'show the help'\n", prog)
	fmt.Fprintf(w, "complete -c %s -n __fish_use_subcommand -s V -l version -d 'print the version'\n", prog)
	for _, c := range commands() {
		fmt.Fprintf(w, "complete -c %s -n __fish_use_subcommand -a %s -d %s\n", prog, c.name, fishQuote(c.summary))
	}
	for _, c := range commands() {
		cond := fmt.Sprintf("-n '__fish_seen_subcommand_from %s'", c.name)
		fmt.Fprintf(w, "complete -c %s %s -s h -l help -d 'show the help'\n", prog, cond)
		for _, o := range c.options {
			var flags []string
			for _, n := range o.names {
				flags = append(flags, fishOption(n))
			}
			line := fmt.Sprintf("complete -c %s %s %s", prog, cond, strings.Join(flags, " "))
			if o.takesValue() {
				switch kind, list := valueKind(o); kind {
				case "list":
					line += " -x -a " + fishQuote(strings.Join(list, " "))
				case completeFile:
					line += " -r -F"
				case completeDir:
					line += " -x -a '(__fish_complete_directories)'"
				default:
					line += " -x"
				}
			}
			fmt.Fprintf(w, "%s -d %s\n", line, fishQuote(firstSentence(o.help)))
		}
		for _, a := range c.args {
			switch list := words(a.complete); {
			case list != nil:
				fmt.Fprintf(w, "complete -c %s %s -a %s\n", prog, cond, fishQuote(strings.Join(list, " ")))
			case a.complete == completeFile:
				fmt.Fprintf(w, "complete -c %s %s -F\n", prog, cond)
			}
		}
	}
}
