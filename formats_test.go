package genvm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// TestFormatsFromTheRegistry: the architecture file and the input format
// are validated against what the format registry can write and read, not
// against a list of names written down elsewhere.
func TestFormatsFromTheRegistry(t *testing.T) {
	dir := t.TempDir()
	load := func(yml string) error {
		path := filepath.Join(dir, "arch.yml")
		if err := os.WriteFile(path, []byte("owner: o\nimages:\n  a:\n    name: a\n    size: 1G\n"+yml), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadArchitecture(path)
		return err
	}
	// The lists grow as formats learn to be written and read: take them
	// from the registry, and a format that cannot be written from it too.
	writes, reads := strings.Join(disk.WritableFormats(), ", "), strings.Join(disk.ReadableFormats(), ", ")
	notWritable := ""
	for _, f := range disk.Formats() {
		if f.Create == nil {
			notWritable = f.Name
			break
		}
	}
	tests := []struct {
		name, yml string
		says      string // "" when the file is valid
	}{
		{"writable output", "    format: raw\n", ""},
		{"known but not writable output", "    format: " + notWritable + "\n", `"` + notWritable + `" is not a format this version writes; use one of ` + writes},
		{"unknown output", "    format: qcow3\n", `"qcow3" is not a format this version writes; use one of ` + writes},
		// An input may declare a format we recognise but cannot read: it is
		// refused when it is opened, with the reason.
		{"known input", "    input: {path: p, format: vmdk}\n", ""},
		{"unknown input", "    input: {path: p, format: qcow3}\n", `unknown format "qcow3"; this version reads ` + reads},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := load(tt.yml)
			if tt.says == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if CodeOf(err) != CodeInvalidAttribute || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("got code %d: %v; want %d saying %q", CodeOf(err), err, CodeInvalidAttribute, tt.says)
			}
		})
	}

	// A declared input format that is no format at all names those this
	// version reads.
	oracle.QemuImg(t)
	in := filepath.Join(dir, "in.qcow2")
	oracle.MustRun(t, "create", "-q", "-f", "qcow2", in, "1M")
	_, err := Generate(context.Background(), Spec{Name: "x", Size: "1M", OutputDirectory: t.TempDir(), Input: &Input{Path: in, Format: "qcow3"}})
	if CodeOf(err) != CodeInvalidAttribute || !strings.Contains(err.Error(), `"qcow3" is not a format we know (this version reads `+reads+`)`) {
		t.Fatalf("declared qcow3: code %d: %v", CodeOf(err), err)
	}
}
