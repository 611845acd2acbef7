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

func TestOutputName(t *testing.T) {
	tests := []struct{ name, version, format, want string }{
		{"rocky", "9.4", "qcow2", "rocky-9.4.qcow2"},
		{"rocky", "", "raw", "rocky.raw"},
		{"input-path-image", "12", "qcow2", "input-path-image-12.qcow2"},
	}
	for _, tc := range tests {
		if got := OutputName(tc.name, tc.version, tc.format); got != tc.want {
			t.Errorf("OutputName(%q, %q, %q) = %q, want %q", tc.name, tc.version, tc.format, got, tc.want)
		}
	}
	if got := OutputPath("", "a", "", "raw"); got != filepath.Join("generated-images", "a.raw") {
		t.Errorf("default directory: %q", got)
	}
}

func TestResponseJSON(t *testing.T) {
	tests := []struct {
		name string
		r    Response
		want string
	}{
		{"success", NewResponse("", nil, false, nil),
			"{\n    \"response\": \"\",\n    \"return_code\": 0,\n    \"status\": \"success\",\n    \"verbose_messages\": []\n}"},
		{"failure with messages", NewResponse("", []string{"a <b> & c"}, true, &Error{Code: CodeChecksum, Msg: "bad"}),
			"{\n    \"response\": \"bad\",\n    \"return_code\": 6,\n    \"status\": \"failed\",\n    \"verbose_messages\": [\n        \"a <b> & c\"\n    ]\n}"},
		{"non-ASCII escaped as Python does", NewResponse("blå 😀", nil, false, nil),
			"{\n    \"response\": \"bl\\u00e5 \\ud83d\\ude00\",\n    \"return_code\": 0,\n    \"status\": \"success\",\n    \"verbose_messages\": []\n}"},
		{"messages hidden without verbose", NewResponse("ok", []string{"x"}, false, nil),
			"{\n    \"response\": \"ok\",\n    \"return_code\": 0,\n    \"status\": \"success\",\n    \"verbose_messages\": []\n}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.r.MarshalPython()
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("got\n%s\nwant\n%s", b, tc.want)
			}
		})
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

func TestRequestSpec(t *testing.T) {
	req := Request{Name: "n", Size: []byte(`"10G"`), Version: []byte(`9.4`), Input: []byte(`"https://example.invalid/x.qcow2"`)}
	s, err := req.Spec()
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != "9.4" || s.Size != "10G" || s.Input == nil || s.Input.URL == "" {
		t.Fatalf("%+v", s)
	}
	req.Input = []byte(`{"path": "a.qcow2", "checksum": {"type": "sha256", "value": "ab"}}`)
	s, err = req.Spec()
	if err != nil || s.Input.Path != "a.qcow2" || s.Input.Checksum.Type != "sha256" {
		t.Fatalf("%+v %v", s, err)
	}
	req.Version = []byte(`{"x": 1}`)
	if _, err := req.Spec(); CodeOf(err) != CodeInvalidAttribute {
		t.Fatalf("object as version: %v", err)
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
