package genvm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ucphhpc/gen-vm-image-go/checksum"
)

// rawInput is a small raw disk image: data, a hole, data.
func rawInput() []byte {
	b := make([]byte, 1<<20)
	copy(b, "some data at the start")
	copy(b[700_000:], "and more further on")
	return b
}

func hexSHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestGenerateFromURL(t *testing.T) {
	data := rawInput()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/disk.raw":
			http.ServeContent(w, r, "disk.raw", time.Unix(1e9, 0), bytes.NewReader(data))
		case "/SHA256SUMS":
			w.Write([]byte(hexSHA256(data) + "  disk.raw\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	cache := t.TempDir()
	tests := []struct {
		name  string
		input Input
		code  int
		msg   string
	}{
		{"no checksum", Input{URL: srv.URL + "/disk.raw"}, 0, ""},
		{"checksum", Input{URL: srv.URL + "/disk.raw", Checksum: &checksum.Spec{Type: "sha256", Value: hexSHA256(data)}}, 0, ""},
		{"checksum file", Input{URL: srv.URL + "/disk.raw", Checksum: &checksum.Spec{File: srv.URL + "/SHA256SUMS"}}, 0, ""},
		{"mirror", Input{URL: srv.URL + "/gone.raw", Mirrors: []string{srv.URL + "/disk.raw"}}, 0, ""},
		{"mismatch", Input{URL: srv.URL + "/disk.raw", Checksum: &checksum.Spec{Type: "sha256", Value: strings.Repeat("0", 64)}}, CodeChecksum, "does not match the expected checksum: " + strings.Repeat("0", 64)},
		{"404", Input{URL: srv.URL + "/gone.raw"}, CodeDownload, "Failed to download " + srv.URL + "/gone.raw: the server answered 404 Not Found"},
		{"signature without key", Input{URL: srv.URL + "/disk.raw", Checksum: &checksum.Spec{File: "S", Signature: "S.gpg"}}, CodeMissingAttribute, "a key to verify"},
		{"value and file", Input{URL: srv.URL + "/disk.raw", Checksum: &checksum.Spec{Type: "sha256", Value: "00", File: "S"}}, CodeInvalidAttribute, "give only one"},
		{"missing local checksum file", Input{URL: srv.URL + "/disk.raw", Checksum: &checksum.Spec{File: filepath.Join(cache, "nope")}}, CodePathNotFound, "Path not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := t.TempDir()
			in := tt.input
			res, err := Generate(context.Background(), Spec{Name: "img", Size: "2M", Input: &in, OutputDirectory: out}, WithCacheDir(cache))
			if code := CodeOf(err); code != tt.code || (err != nil && !strings.Contains(err.Error(), tt.msg)) {
				t.Fatalf("code %d, error %v; want %d %q\n%s", code, err, tt.code, tt.msg, strings.Join(res.Messages, "\n"))
			}
			entries := imageFiles(t, out)
			if tt.code != 0 {
				if len(entries) != 0 {
					t.Errorf("output left: %v", entries)
				}
				return
			}
			if len(entries) != 1 || entries[0] != "img.qcow2" {
				t.Errorf("output: %v", entries)
			}
		})
	}
}

func TestGenerateLocalWithChecksumFile(t *testing.T) {
	dir := t.TempDir()
	data := rawInput()
	path := filepath.Join(dir, "disk.raw")
	os.WriteFile(path, data, 0o644)
	sums := filepath.Join(dir, "SUMS")
	os.WriteFile(sums, []byte("SHA256 (disk.raw) = "+hexSHA256(data)+"\n"), 0o644)
	res, err := Generate(context.Background(), Spec{Name: "img", Size: "1M", OutputDirectory: dir,
		Input: &Input{Path: path, Checksum: &checksum.Spec{File: sums}}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(res.Messages, "\n"), "The calculated checksum: "+hexSHA256(data)) {
		t.Errorf("%q", res.Messages)
	}
	os.WriteFile(sums, []byte(strings.Repeat("1", 64)+"  disk.raw\n"), 0o644)
	_, err = Generate(context.Background(), Spec{Name: "img2", Size: "1M", OutputDirectory: dir,
		Input: &Input{Path: path, Checksum: &checksum.Spec{File: sums}}})
	if CodeOf(err) != CodeChecksum {
		t.Errorf("mismatch: %v", err)
	}
}
