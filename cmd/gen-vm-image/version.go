package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	genvm "github.com/ucphhpc/gen-vm-image-go"
)

// versionLine is what --version prints: the version first (scripts that
// read it, as they read the Python tool's, take the first word), then the
// commit and the Go that built it, from the build information, so that a
// `go install` build says where it came from too.
func versionLine() string {
	line := prog + " " + genvm.Version
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return line + fmt.Sprintf(" (%s %s/%s)", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	}
	commit, modified, when := "", false, ""
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		case "vcs.time":
			when = s.Value
		}
	}
	if v := info.Main.Version; commit == "" && v != "" && v != "(devel)" {
		line += " (module " + v + ")"
	}
	if commit != "" {
		if len(commit) > 12 {
			commit = commit[:12]
		}
		line += " (commit " + commit
		if modified {
			line += ", with uncommitted changes"
		}
		if when != "" {
			line += ", " + when
		}
		line += ")"
	}
	return line + fmt.Sprintf(", built with %s for %s/%s", info.GoVersion, runtime.GOOS, runtime.GOARCH)
}
