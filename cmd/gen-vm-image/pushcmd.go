package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	genvm "github.com/ucphhpc/gen-vm-image-go"
	"github.com/ucphhpc/gen-vm-image-go/jsonproto"
)

// The registry options of the commands that reach registries.
var (
	insecureOption = option{names: []string{"--insecure"}, dest: "insecure",
		help: "Allow registries that speak plain HTTP (never turns certificate checks off: trust a private CA with SSL_CERT_FILE)."}
	platformOption = option{names: []string{"--platform"}, dest: "platform", metavar: "OS/ARCH",
		help: "The platform the pushed image declares, which the nodes that run it must match, e.g. linux/arm64. (default: linux/amd64)"}
)

var pushOptions = []option{
	insecureOption, platformOption,
	verboseOption, quietOption,
}

func pushCommand() command {
	return command{
		name:    "push",
		summary: "Push an image to an OCI registry as a KubeVirt containerDisk",
		description: `Push a raw or qcow2 image to an OCI registry as a KubeVirt containerDisk: an
image whose one layer holds /disk/FILE, owned by 107:107 (qemu) and read-only,
as KubeVirt expects. The layer is streamed from the file and hashed on the way:
no copy of the disk is made. The same file gives the same image digest on
every push (its timestamps are SOURCE_DATE_EPOCH, else the Unix epoch).

Credentials come from the Docker configuration ($DOCKER_CONFIG/config.json or
~/.docker/config.json: docker login or podman login writes them).`,
		args: []positional{
			{name: "file", help: "The image to push (raw or qcow2).", complete: completeFile},
			{name: "reference", help: "Where to push it: REGISTRY/REPOSITORY[:TAG] (default tag: latest)."},
		},
		options: pushOptions,
		epilog: `The result is printed as JSON: on stdout on success, with the image's reference
by digest (REGISTRY/REPOSITORY@sha256:...), on stderr on failure; the exit code
is its return_code (10: the registry or the network, 6: a digest mismatch).

A VirtualMachine boots it with:

  volumes:
    - name: containerdisk
      containerDisk:
        image: REGISTRY/REPOSITORY@sha256:...
`,
		run: runPush,
	}
}

func runPush(ctx context.Context, e env, p *parsed) int {
	verbose := p.switches["verbose"]
	created, err := sourceDateEpoch()
	if err != nil {
		return respond(e, jsonproto.NewResponse("", nil, verbose, err))
	}
	opts, stop, err := runOptions(e, p)
	if err != nil {
		stop()
		return respond(e, jsonproto.NewResponse("", nil, verbose, err))
	}
	res, err := genvm.Push(ctx, genvm.PushSpec{File: p.positionals[0], Reference: p.positionals[1], Platform: p.values["platform"], Created: created}, opts...)
	stop()
	msg := ""
	if res.Pushed != nil {
		msg = fmt.Sprintf("Pushed %s to %s: %s", p.positionals[0], res.Pushed.Reference, res.Pushed.Pinned())
	}
	return respond(e, jsonproto.NewResponse(msg, res.Messages, verbose, err))
}

// sourceDateEpoch is the time SOURCE_DATE_EPOCH gives (reproducible-builds.org:
// seconds since the Unix epoch), or the zero time when it is not set.
func sourceDateEpoch() (time.Time, error) {
	v, ok := os.LookupEnv("SOURCE_DATE_EPOCH")
	if !ok || strings.TrimSpace(v) == "" {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 || n > 253402300799 { // 9999-12-31T23:59:59Z
		return time.Time{}, genvm.Errorf(genvm.CodeInvalidAttribute, err, "Invalid SOURCE_DATE_EPOCH %q: it must be a number of seconds since 1970-01-01", v)
	}
	return time.Unix(n, 0).UTC(), nil
}
