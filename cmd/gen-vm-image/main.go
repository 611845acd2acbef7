// Command gen-vm-image generates virtual machine disk images: blank ones, or
// ones based on an existing image, converted and resized, with no external
// programs. It keeps the command line, output names, JSON result and exit
// codes of the Python tool of the same name.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	genvm "github.com/ucphhpc/gen-vm-image-go"
	"github.com/ucphhpc/gen-vm-image-go/jsonproto"
)

const prog = "gen-vm-image"

// forceExitAfter is how long a run may take to clean up after SIGINT or
// SIGTERM; cleaning up takes milliseconds, so a run still going then is
// stuck (a file system that does not answer) and must not hold the user.
const forceExitAfter = 10 * time.Second

// interruption is why a run was cancelled: a signal. The run's result
// and exit code say so (128 + the signal's number, as shells do).
type interruption struct{ sig os.Signal }

func (i *interruption) Error() string { return "interrupted by " + signalName(i.sig) }

// Is makes the signal a cancellation wherever an error carries it as the
// cause (HTTP clients return the cause, not context.Canceled), so that
// every layer tells an interruption as one.
func (i *interruption) Is(target error) bool { return target == context.Canceled }

func (i *interruption) code() int {
	if i.sig == syscall.SIGTERM {
		return 143
	}
	return 130
}

func signalName(sig os.Signal) string {
	if sig == syscall.SIGTERM {
		return "SIGTERM"
	}
	return "SIGINT (Ctrl-C)"
}

// interrupted returns the signal that cancelled ctx, or nil.
func interrupted(ctx context.Context) *interruption {
	var i *interruption
	if errors.As(context.Cause(ctx), &i) {
		return i
	}
	return nil
}

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-signals
		cancel(&interruption{sig})
		// A second signal, or a run that does not end, exits at once; the
		// next run removes what this one leaves (temporary files).
		select {
		case <-signals:
		case <-time.After(forceExitAfter):
		}
		i := &interruption{sig}
		fmt.Fprintf(os.Stderr, "%s: %v again: exiting without cleaning up\n", prog, signalName(sig))
		os.Exit(i.code())
	}()
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	os.Exit(code)
}

// env is what a command needs from the process.
type env struct {
	ctx            context.Context // the run's: tells an interrupted run
	stdin          io.Reader
	stdout, stderr io.Writer
	// progress is set when stderr is a terminal.
	progress bool
}

// commands are the subcommands, in the order --help lists them.
func commands() []command {
	return []command{singleCommand(), multipleCommand(), convertCommand(), pushCommand(), checkCommand(), infoCommand(), jsonCommand(),
		completionCommand(), manCommand()}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		e.progress = true
	}
	if len(args) == 0 {
		fmt.Fprint(stdout, topHelp(e.width()))
		return 0
	}
	switch args[0] {
	case "-h", "--help":
		fmt.Fprint(stdout, topHelp(e.width()))
		return 0
	case "-V", "--version":
		fmt.Fprintln(stdout, versionLine())
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.invoke(ctx, e, args[1:])
		}
	}
	msg := fmt.Sprintf("argument COMMAND: invalid choice: %q (choose from %s)", args[0], strings.Join(commandNames(), ", "))
	if strings.HasPrefix(args[0], "-") {
		msg = fmt.Sprintf("unrecognized arguments: %s (the options go after the command: %s COMMAND -h lists them)", args[0], prog)
	}
	if s := suggest(args[0], append(commandNames(), "--help", "--version")); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	fmt.Fprintf(stderr, "%s%s: error: %s\n", topUsage(e.width()), prog, msg)
	return 2
}

func commandNames() []string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return names
}

func topUsage(width int) string {
	return fill("usage: "+prog+" ", []string{"[-h]", "[--version]", "{" + strings.Join(commandNames(), ",") + "}", "..."}, width)
}

const topDescription = `Generate virtual machine disk images: blank, or based on a local, downloaded or
registry image that is verified, converted and resized, and push them to OCI
registries as KubeVirt containerDisks. No external programs are needed.`

func topHelp(width int) string {
	var b strings.Builder
	b.WriteString(topUsage(width))
	b.WriteString("\n" + reflow(topDescription, width, "") + "\n")
	b.WriteString("\noptions:\n")
	b.WriteString(helpItem("  -h, --help", "show this help message and exit", width))
	b.WriteString(helpItem("  --version, -V", "Print the version of the program", width))
	b.WriteString("\nCOMMAND:\n")
	for _, c := range commands() {
		b.WriteString(helpItem("  "+c.name, c.summary, width))
	}
	fmt.Fprintf(&b, "\nRun '%s COMMAND -h' for a command's options.\n", prog)
	return b.String()
}

// respond prints the JSON result (stdout on success, stderr on failure) and
// returns the exit code.
func respond(e env, r jsonproto.Response) int {
	if i := interrupted(e.ctx); i != nil && r.ReturnCode != genvm.CodeSuccess {
		r.ReturnCode = i.code()
		r.Status = "failed"
		r.Response = strings.ReplaceAll(r.Response, ": "+context.Canceled.Error(), "") // the signal says it better
		if !strings.HasPrefix(r.Response, "Interrupted") {
			r.Response = "Interrupted: " + r.Response
		}
		r.Response += " (" + i.Error() + "; nothing half-written was left)"
	}
	out, err := r.MarshalPython()
	if err != nil {
		fmt.Fprintf(e.stderr, "Failed to dump JSON: %v\n", err)
		return genvm.CodeJSON
	}
	w := e.stdout
	if r.ReturnCode != genvm.CodeSuccess {
		w = e.stderr
	}
	fmt.Fprintf(w, "%s\n", out)
	return r.ReturnCode
}
