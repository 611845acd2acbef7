package main

import (
	be "encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// gviCols runs the binary with COLUMNS set.
func gviCols(t *testing.T, dir string, cols string, args ...string) runResult {
	t.Helper()
	return gviEnv(t, dir, []string{"COLUMNS=" + cols}, args...)
}

// TestHelpWrapsAndDescribes: every command's -h describes its arguments,
// and its usage lines fit the width asked for.
func TestHelpWrapsAndDescribes(t *testing.T) {
	dir := t.TempDir()
	for _, c := range commands() {
		for _, cols := range []string{"80", "160"} {
			r := gviCols(t, dir, cols, c.name, "-h")
			if r.code != 0 {
				t.Fatalf("%s -h: exit %d %s", c.name, r.code, r.stderr)
			}
			width := map[string]int{"80": 80, "160": 160}[cols]
			inUsage := true
			for _, line := range strings.Split(r.stdout, "\n") {
				if line == "" {
					inUsage = false
				}
				if inUsage && len(line) > width {
					t.Errorf("%s -h at %s columns: a usage line of %d: %q", c.name, cols, len(line), line)
				}
				// Only an option's names may be longer (argparse
				// does not break them either): descriptions, help
				// and the text after them fit 80 columns.
				if len(line) > max(width, 80) && !strings.HasPrefix(line, "  -") {
					t.Errorf("%s -h at %s columns: a line of %d: %q", c.name, cols, len(line), line)
				}
				if strings.Contains(line, "` + ") || strings.Contains(line, " + `") {
					t.Errorf("%s -h: Go source in the help: %q", c.name, line)
				}
			}
			for _, a := range c.args {
				if !strings.Contains(r.stdout, "  "+a.name) {
					t.Errorf("%s -h does not describe its argument %s", c.name, a.name)
				}
			}
		}
	}
}

// TestDidYouMean: a mistyped command, option or choice gets a suggestion.
func TestDidYouMean(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"singel", "x", "1G"}, `did you mean "single"?`},
		{[]string{"single", "x", "1G", "--overwirte"}, "did you mean --overwrite?"},
		{[]string{"single", "x", "1G", "--input-checksun-type", "sha256"}, "did you mean --input-checksum-type?"},
		{[]string{"info", "--output", "jsno", "x"}, `did you mean "json"?`},
		{[]string{"completion", "bsh"}, `did you mean "bash"?`},
	}
	for _, tt := range tests {
		r := gvi(t, dir, tt.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%v: exit %d %q; want a usage error with %q", tt.args, r.code, r.stderr, tt.want)
		}
	}
}

// TestCheckExitCodes: check exits as qemu-img check does.
func TestCheckExitCodes(t *testing.T) {
	dir := t.TempDir()
	raw, qcow := patternImage(t, dir, 1<<20, false)
	// A leak and a corruption, by hand in copies of a qcow2 (default
	// layout: 64 KiB clusters, 16-bit refcounts; qcow2.txt "Header" and
	// "Host cluster management").
	refcount := func(name string, cluster int64, value uint16, grow bool) string {
		b, err := os.ReadFile(qcow)
		if err != nil {
			t.Fatal(err)
		}
		table := int64(be.BigEndian.Uint64(b[48:]))
		block := int64(be.BigEndian.Uint64(b[table:]))
		if grow {
			cluster = (int64(len(b)) + 65535) / 65536
			b = append(b, make([]byte, cluster*65536+65536-int64(len(b)))...)
		}
		be.BigEndian.PutUint16(b[block+2*cluster:], value)
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	leaky := refcount("leaky.qcow2", 0, 1, true)
	corrupt := refcount("corrupt.qcow2", 0, 0, false)
	tests := []struct {
		name string
		file string
		code int
	}{
		{"clean", qcow, 0},
		{"no such file", filepath.Join(dir, "nope.qcow2"), 1},
		{"corrupted", corrupt, 2},
		{"leaks only", leaky, 3},
		{"raw has no check", raw, 63},
	}
	for _, tt := range tests {
		r := gvi(t, dir, "check", tt.file)
		want := tt.code
		if _, _, code := oracle.Run(t, "check", tt.file); code != want {
			t.Fatalf("%s: qemu-img check exits %d, the test expects %d", tt.name, code, want)
		}
		if r.code != want {
			t.Errorf("%s: check exits %d, want %d as qemu-img: %s%s", tt.name, r.code, want, r.stdout, r.stderr)
		}
	}
}

// TestConvertFormatFromExtension: without -O the output's name decides;
// a name that says another format than -O is refused.
func TestConvertFormatFromExtension(t *testing.T) {
	dir := t.TempDir()
	_, qcow := patternImage(t, dir, 1<<20, false)
	for _, tt := range []struct{ out, format string }{{"a.raw", "raw"}, {"b.img", "raw"}, {"c.qcow2", "qcow2"}, {"d", "qcow2"}} {
		r := gvi(t, dir, "convert", qcow, filepath.Join(dir, tt.out))
		if r.code != 0 {
			t.Fatalf("convert to %s: %s", tt.out, r.stderr)
		}
		if info := oracle.ImageInfo(t, filepath.Join(dir, tt.out)); info.Format != tt.format {
			t.Errorf("%s is %s, want %s", tt.out, info.Format, tt.format)
		}
	}
	r := gvi(t, dir, "convert", "-O", "qcow2", qcow, filepath.Join(dir, "e.raw"))
	if r.code != 5 || !strings.Contains(r.stderr, "named as a raw image, but the output format is qcow2") {
		t.Errorf("a contradicting extension: exit %d %s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "e.raw")); err == nil {
		t.Error("it was written anyway")
	}
}

// TestQuietAndNotices: notices (an image kept, unknown keys) reach stderr
// without -v, and -q leaves only the JSON result; multiple does not claim
// to have built what it kept.
func TestQuietAndNotices(t *testing.T) {
	dir := t.TempDir()
	if r := gvi(t, dir, "single", "kept", "1M"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	r := gvi(t, dir, "single", "kept", "1M")
	if r.code != 0 || !strings.Contains(r.stderr, "notice: The output image: generated-images/kept.qcow2 already exists and is kept") {
		t.Errorf("kept image: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := gvi(t, dir, "single", "kept", "1M", "-q"); r.code != 0 || r.stderr != "" {
		t.Errorf("-q: stderr %q", r.stderr)
	}
	if r := gvi(t, dir, "single", "empty", "0"); r.code != 0 || !strings.Contains(r.stderr, "notice: The size is 0") {
		t.Errorf("size 0: exit %d, stderr %q", r.code, r.stderr)
	}
	arch := filepath.Join(dir, "a.yml")
	writeFile(t, arch, "owner: me\nimages:\n  k:\n    name: kept\n    size: 1M\n    formt: raw\n")
	r = gvi(t, dir, "multiple", arch)
	resp := r.result(t)
	if r.code != 0 || strings.Contains(resp.Response, "Successfully built") || !strings.Contains(resp.Response, "were kept") {
		t.Errorf("multiple with a kept image: %q", resp.Response)
	}
	if !strings.Contains(r.stderr, `unknown key "formt"`) || !strings.Contains(r.stderr, `did you mean "format"?`) {
		t.Errorf("multiple: no notice of the typo: %q", r.stderr)
	}
}

// TestCompletionScripts: the scripts load in their shells and complete
// commands, options and formats.
func TestCompletionScripts(t *testing.T) {
	dir := t.TempDir()
	script := func(shell string) string {
		r := gvi(t, dir, "completion", shell)
		if r.code != 0 {
			t.Fatalf("completion %s: %s", shell, r.stderr)
		}
		path := filepath.Join(dir, "gvi."+shell)
		writeFile(t, path, r.stdout)
		return path
	}
	shell := func(t *testing.T, name string) string {
		p, err := exec.LookPath(name)
		if err != nil {
			if os.Getenv("GVI_REQUIRE_SHELLS") == "1" {
				t.Fatalf("%s is not installed (GVI_REQUIRE_SHELLS=1)", name)
			}
			t.Skipf("%s is not installed", name)
		}
		return p
	}
	t.Run("bash", func(t *testing.T) {
		bash := shell(t, "bash")
		path := script("bash")
		complete := func(line ...string) string {
			cmd := exec.Command(bash, append([]string{"-c", `source "$0"; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _gen_vm_image; echo "${COMPREPLY[*]}"`, path}, line...)...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %v\n%s", line, err, out)
			}
			return strings.TrimSpace(string(out))
		}
		if got := complete("gen-vm-image", "sin"); got != "single" {
			t.Errorf("command: %q", got)
		}
		if got := complete("gen-vm-image", "single", "x", "1G", "-of", ""); !strings.Contains(got, "qcow2") || !strings.Contains(got, "raw") {
			t.Errorf("output formats: %q", got)
		}
		if got := complete("gen-vm-image", "single", "--overw"); got != "--overwrite" {
			t.Errorf("option: %q", got)
		}
		if got := complete("gen-vm-image", "info", "--output", ""); got != "human json" {
			t.Errorf("choices: %q", got)
		}
	})
	t.Run("zsh", func(t *testing.T) {
		zsh := shell(t, "zsh")
		path := script("zsh")
		out, err := exec.Command(zsh, "-c", `autoload -Uz compinit && compinit -u -d "$1.dump" && source "$0" && print -r -- ${_comps[gen-vm-image]}`, path, filepath.Join(dir, "zcomp")).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "_gen_vm_image" {
			t.Errorf("zsh: %v %q", err, out)
		}
	})
	t.Run("fish", func(t *testing.T) {
		fish := shell(t, "fish")
		path := script("fish")
		complete := func(line string) string {
			out, err := exec.Command(fish, "--no-config", "-c", `source $argv[1]; complete -C$argv[2]`, path, line).CombinedOutput()
			if err != nil {
				t.Fatalf("%q: %v\n%s", line, err, out)
			}
			return string(out)
		}
		if got := complete("gen-vm-image sin"); !strings.HasPrefix(got, "single\t") {
			t.Errorf("command: %q", got)
		}
		if got := complete("gen-vm-image single x 1G -of "); !strings.Contains(got, "qcow2") {
			t.Errorf("output formats: %q", got)
		}
		if got := complete("gen-vm-image single -icb"); !strings.Contains(got, "-icbs") {
			t.Errorf("a single-dash long option: %q", got)
		}
	})
}

// TestManPage: the man page is valid roff and describes every command and
// option.
func TestManPage(t *testing.T) {
	dir := t.TempDir()
	r := gvi(t, dir, "man")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		if os.Getenv("GVI_REQUIRE_SHELLS") == "1" {
			t.Fatal("groff is not installed")
		}
		t.Skip("groff is not installed")
	}
	cmd := exec.Command(groff, "-man", "-Tutf8", "-P-cbou")
	cmd.Stdin = strings.NewReader(r.stdout)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	check := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z")
	check.Stdin = strings.NewReader(r.stdout)
	check.Stderr = &stderr
	check.Run()
	if stderr.Len() > 0 {
		t.Errorf("groff warns: %s", stderr.String())
	}
	text := string(out)
	for _, c := range commands() {
		if !strings.Contains(text, strings.ToUpper(c.name)) {
			t.Errorf("no section for %s", c.name)
		}
		for _, o := range c.options {
			for _, n := range o.names {
				if !strings.Contains(text, n) {
					t.Errorf("%s: option %s is not in the man page", c.name, n)
				}
			}
		}
	}
}

// TestInfoAndCheckTextAsQemu: the human output of info and check is
// qemu-img's, line for line (sizes rounded the same way); what is ours
// only comes under a flag.
func TestInfoAndCheckTextAsQemu(t *testing.T) {
	dir := t.TempDir()
	raw, qcow := patternImage(t, dir, 3<<20+4096, false)
	_, zqcow := patternImage(t, t.TempDir(), 2<<20, true)
	for _, img := range []string{raw, qcow, zqcow} {
		for _, cmd := range []string{"info", "check"} {
			want, _, wantCode := oracle.Run(t, cmd, img)
			r := gvi(t, dir, cmd, img)
			if r.stdout != want || r.code != wantCode {
				t.Errorf("%s %s: exit %d, want %d\nours:\n%s\nqemu-img:\n%s", cmd, filepath.Base(img), r.code, wantCode, r.stdout, want)
			}
		}
	}
}
