package main

import genvm "github.com/ucphhpc/gen-vm-image-go"

// noSyncOption is the same switch for every command that writes images.
var noSyncOption = option{names: []string{"--no-sync"}, dest: "no_sync",
	help: "Do not wait for each image to reach the disk before it is\nrenamed into place (qemu-img's default). Faster on slow disks,\nbut after a crash or power loss an image may be there with data\nmissing: for throwaway builds."}

// runOptions are the genvm options a command that writes images takes from
// its switches and its terminal; stop ends the progress bar.
func runOptions(e env, p *parsed) (opts []genvm.Option, stop func()) {
	stop = func() {}
	if e.progress {
		bar := newProgressBar(e.stderr)
		stop = bar.finish
		opts = append(opts, genvm.WithProgress(bar.update))
	}
	if p.switches["no_sync"] {
		opts = append(opts, genvm.WithoutSync())
	}
	return opts, stop
}
