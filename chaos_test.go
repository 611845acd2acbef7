package genvm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/checksum"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
	"github.com/ucphhpc/gen-vm-image-go/output"
)

// Chaos: what other processes do to our files between two of our steps.

func filled(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestChecksumAndUseAreOneFile: a file renamed over the input after its
// checksum was verified is not what gets converted; the verified one is.
func TestChecksumAndUseAreOneFile(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.raw")
	good := filled(0xaa, 1<<20)
	if err := os.WriteFile(in, good, 0o644); err != nil {
		t.Fatal(err)
	}
	evil := filepath.Join(dir, "evil.raw")
	if err := os.WriteFile(evil, filled(0xee, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := Spec{Name: "img", Size: "1M", Format: "raw", OutputDirectory: filepath.Join(dir, "out"),
		Input: &Input{Path: in, Checksum: &checksum.Spec{Type: "sha256", Value: sha256Hex(good)}}}
	swap := func(o *options) {
		o.afterVerify = func(path string) {
			if err := os.Rename(evil, path); err != nil {
				t.Error(err)
			}
		}
	}
	res, err := Generate(context.Background(), spec, swap)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(res.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, good) {
		t.Fatalf("the image holds %x..., not the verified input", got[:4])
	}
}

func TestEmptyInputIsRefused(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "empty.qcow2")
	if err := os.WriteFile(in, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	_, err := Generate(context.Background(), Spec{Name: "img", Size: "1M", OutputDirectory: out, Input: &Input{Path: in}})
	if CodeOf(err) != CodeLoadFailed || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty input: code %d, %v; want %d saying it is empty", CodeOf(err), err, CodeLoadFailed)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("left %v", entries)
	}
}

// TestRaceForOneOutput: two runs for one output name, both past the check
// that it does not exist yet: one creates the image, the other keeps it
// (success, as for any existing image) and leaves nothing of its own.
func TestRaceForOneOutput(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.raw")
	data := filled(0xa5, 4<<20)
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	spec := Spec{Name: "img", Size: "4M", OutputDirectory: out,
		Input: &Input{Path: in, Checksum: &checksum.Spec{Type: "sha256", Value: sha256Hex(data)}}}
	// Both runs wait here, after their existence check, for each other.
	var arrived sync.WaitGroup
	arrived.Add(2)
	barrier := func(o *options) { o.afterVerify = func(string) { arrived.Done(); arrived.Wait() } }
	results := make([]*Result, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() { results[i], errs[i] = Generate(context.Background(), spec, barrier) })
	}
	wg.Wait()
	created := 0
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("run %d: %v", i, errs[i])
		}
		if results[i].Created {
			created++
		} else if !strings.Contains(strings.Join(results[i].Messages, "\n"), "was created by another run") {
			t.Errorf("the run that lost does not say why: %q", results[i].Messages)
		}
	}
	if created != 1 {
		t.Fatalf("%d runs created the image, want 1", created)
	}
	oracle.AssertQcow2(t, filepath.Join(out, "img.qcow2"), 4<<20)
	entries := imageFiles(t, out)
	if len(entries) != 1 {
		t.Errorf("the output directory holds %v", entries)
	}
}

// TestAbandonedTempFilesAreRemoved: what a killed run left (a temporary
// file nobody holds) goes at the next run in the directory, which says so;
// a file still being written stays.
func TestAbandonedTempFilesAreRemoved(t *testing.T) {
	out := t.TempDir()
	live, err := output.Create(filepath.Join(out, "busy.qcow2"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Abort()
	dead := filepath.Join(out, ".img.qcow2.tmp-gvi-00112233aabb")
	if !output.IsTemp(filepath.Base(dead)) {
		t.Fatalf("%s is not named as our temporary files are", dead)
	}
	if err := os.WriteFile(dead, filled(1, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Generate(context.Background(), Spec{Name: "other", Size: "1M", OutputDirectory: out})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); err == nil {
		t.Error("the abandoned temporary file is still there")
	}
	if _, err := os.Stat(live.Name()); err != nil {
		t.Errorf("the file being written was removed: %v", err)
	}
	if !strings.Contains(strings.Join(res.Messages, "\n"), "Removed "+dead) {
		t.Errorf("messages do not name what was removed: %q", res.Messages)
	}
}
