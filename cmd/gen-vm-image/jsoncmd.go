package main

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/term"

	"github.com/ucphhpc/gen-vm-image-go/jsonproto"
)

const jsonHelp = `usage: gen-vm-image json [-h] < request.json

Read one JSON request on stdin and generate the image it describes; for
programs that are not written in Go (the role the Python tool plays as an
initializer plugin of corc). The request has the keys of that plugin call:

  {"name": "debian", "size": "20G", "version": "12", "format": "qcow2",
   "input": "path/to/base.qcow2",        (or {"path": ..., "format": ...,
                                            "checksum": {"type": ..., "value": ...}})
   "output_directory": "generated-images", "overwrite": false, "verbose": true}

The answer is the same JSON result as 'single' prints, on stdout on success and
on stderr on failure, and the exit code is its return_code (9: bad JSON).
`

func runJSON(ctx context.Context, e env, args []string) int {
	p, err := parseArgs(args, nil)
	if err != nil {
		return usageFail(e, "usage: gen-vm-image json [-h] < request.json\n", err)
	}
	if p.help {
		fmt.Fprint(e.stdout, jsonHelp)
		return 0
	}
	if len(p.positionals) > 0 {
		return usageFail(e, "usage: gen-vm-image json [-h] < request.json\n", fmt.Errorf("unrecognized arguments: %v", p.positionals))
	}
	if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintln(e.stderr, "Waiting for a JSON request on stdin (type it, then Ctrl-D; Ctrl-C stops). 'gen-vm-image json -h' shows its keys.")
	}
	return respond(e, jsonproto.Serve(ctx, e.stdin))
}
