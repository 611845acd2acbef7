package jsonproto

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	genvm "github.com/ucphhpc/gen-vm-image-go"
)

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
	if _, err := req.Spec(); genvm.CodeOf(err) != genvm.CodeInvalidAttribute {
		t.Fatalf("object as version: %v", err)
	}
}

func TestRequestURLList(t *testing.T) {
	req := Request{Name: "n", Size: []byte(`"1G"`), CacheDir: "/c",
		Input: []byte(`{"url": ["http://a/x.qcow2", "http://b/x.qcow2"], "checksum": {"file": "http://a/SUMS", "signature": "http://a/SUMS.gpg", "key": "k.asc"}}`)}
	s, err := req.Spec()
	if err != nil {
		t.Fatal(err)
	}
	in := s.Input
	if len(req.Options()) != 1 || in.URL != "http://a/x.qcow2" || len(in.Mirrors) != 1 || in.Mirrors[0] != "http://b/x.qcow2" ||
		in.Checksum.File != "http://a/SUMS" || in.Checksum.Signature != "http://a/SUMS.gpg" || in.Checksum.Key != "k.asc" {
		t.Errorf("%+v %+v", s, in)
	}
	req.Input = []byte(`{"url": 5}`)
	if _, err := req.Spec(); genvm.CodeOf(err) != genvm.CodeInvalidAttribute {
		t.Errorf("url 5: %v", err)
	}
}

func TestServe(t *testing.T) {
	disk := make([]byte, 1<<20)
	copy(disk, "a raw disk")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(disk)
	}))
	defer srv.Close()
	out, cache := t.TempDir(), t.TempDir()
	req, _ := json.Marshal(map[string]any{"name": "img", "size": "2M", "input": srv.URL + "/disk.raw",
		"output_directory": out, "cache_dir": cache, "verbose": true})
	r := Serve(context.Background(), strings.NewReader(string(req)))
	if r.ReturnCode != 0 || len(r.VerboseMessages) == 0 {
		t.Fatalf("%+v", r)
	}
	if _, err := os.Stat(filepath.Join(out, "img.qcow2")); err != nil {
		t.Error(err)
	}
	if entries, _ := os.ReadDir(filepath.Join(cache, "downloads")); len(entries) == 0 {
		t.Error("the request's cache_dir holds no download")
	}

	for _, bad := range []string{`{"name": `, strings.Repeat(" ", maxRequestBytes+1)} {
		if r := Serve(context.Background(), strings.NewReader(bad)); r.ReturnCode != genvm.CodeJSON || r.Status != "failed" {
			t.Errorf("%.20q: %+v", bad, r)
		}
	}
}
