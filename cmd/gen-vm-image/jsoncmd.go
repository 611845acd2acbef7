package main

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/term"

	"github.com/ucphhpc/gen-vm-image-go/jsonproto"
)

func jsonCommand() command {
	return command{
		name:    "json",
		summary: "Read a JSON request on stdin (the corc plugin interface) and answer in JSON",
		description: `Read one JSON request on stdin and generate the image it describes; for
programs that are not written in Go (the role the Python tool plays as an
initializer plugin of corc).`,
		epilog: `The request has the keys of that plugin call:

  {"name": "debian", "size": "20G", "version": "12", "format": "qcow2",
   "input": "path/to/base.qcow2",
   "output_directory": "generated-images", "overwrite": false, "verbose": true}

"input" may be a path, a URL, oci://REGISTRY/REPO:TAG, or an object:
  {"path"|"url"|"oci": ..., "format": ...,
   "checksum": {"type": ..., "value": ...}}

The answer is the same JSON result as 'single' prints, on stdout on success and
on stderr on failure, and the exit code is its return_code (9: bad JSON).
`,
		run: runJSON,
	}
}

func runJSON(ctx context.Context, e env, p *parsed) int {
	if f, ok := e.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintln(e.stderr, "Waiting for a JSON request on stdin (type it, then Ctrl-D; Ctrl-C stops). 'gen-vm-image json -h' shows its keys.")
	}
	return respond(e, jsonproto.Serve(ctx, e.stdin))
}
