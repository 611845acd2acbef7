package genvm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

func TestOutputPath(t *testing.T) {
	if got := OutputPath("", "a", "", "raw"); got != filepath.Join("generated-images", "a.raw") {
		t.Errorf("default directory: %q", got)
	}
	if got := OutputPath("out", "rocky", "9.4", "qcow2"); got != filepath.Join("out", "rocky-9.4.qcow2") {
		t.Errorf("named directory: %q", got)
	}
}

func TestCodeOf(t *testing.T) {
	if CodeOf(nil) != 0 || CodeOf(errors.New("x")) != CodeCreateFailed {
		t.Fatal("CodeOf")
	}
	wrapped := errors.Join(errors.New("ctx"), &Error{Code: CodeResize, Msg: "r"})
	if CodeOf(wrapped) != CodeResize {
		t.Fatal("CodeOf does not see a wrapped *Error")
	}
}

func TestGenerateBlankAndKeep(t *testing.T) {
	dir := t.TempDir()
	spec := Spec{Name: "blank", Size: "1G", OutputDirectory: dir}
	res, err := Generate(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	oracle.AssertQcow2(t, res.Path, 1<<30)
	res, err = Generate(context.Background(), spec)
	if err != nil || res.Created || !strings.Contains(strings.Join(res.Messages, "\n"), "already exists") {
		t.Fatalf("second run: %+v %v", res, err)
	}
}

func TestGenerateCancelled(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Generate(ctx, Spec{Name: "c", Size: "1G", OutputDirectory: dir})
	if !errors.Is(err, context.Canceled) || CodeOf(err) != CodeCreateFailed || !strings.Contains(err.Error(), "Interrupted") {
		t.Fatalf("a cancelled run: code %d, %v; want code %d saying it was interrupted", CodeOf(err), err, CodeCreateFailed)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Fatalf("cancelled run left %v", entries)
	}
}
