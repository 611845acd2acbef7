package fetch

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/checksum"
	"github.com/ucphhpc/gen-vm-image-go/internal/pgptest"
)

// files serves a fixed set of paths.
func files(t *testing.T, content map[string][]byte) *server {
	return newServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		data, ok := content[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		serveData(w, r, data, "")
	})
}

func TestSumsFile(t *testing.T) {
	image := payload(100_000)
	other := payload(1000)
	digest := sha256hex(image)
	s512 := sha512.Sum512(image)
	tests := []struct {
		name, sums, typ string
		want            string // algorithm
	}{
		{"GNU text", sha256hex(other) + "  other.img\n" + digest + "  cloud.qcow2\n", "", "sha256"},
		{"GNU binary", digest + " *cloud.qcow2\n", "", "sha256"},
		{"GNU with path", digest + "  ./images/cloud.qcow2\n", "", "sha256"},
		{"BSD", "# comment\nSHA256 (other.img) = " + sha256hex(other) + "\nSHA256 (cloud.qcow2) = " + digest + "\n", "", "sha256"},
		{"BSD sha512 chosen by type", "SHA256 (cloud.qcow2) = " + digest + "\nSHA512 (cloud.qcow2) = " + hex.EncodeToString(s512[:]) + "\n", "sha512", "sha512"},
		{"longest digest wins without type", "SHA256 (cloud.qcow2) = " + digest + "\nSHA512 (cloud.qcow2) = " + hex.EncodeToString(s512[:]) + "\n", "", "sha512"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := files(t, map[string][]byte{"/cloud.qcow2": image, "/SUMS": []byte(tt.sums)})
			for _, where := range []string{"url", "path"} {
				sums := srv.URL + "/SUMS"
				if where == "path" {
					sums = filepath.Join(t.TempDir(), "SUMS")
					os.WriteFile(sums, []byte(tt.sums), 0o644)
				}
				res := fetchOK(t, Request{URLs: []string{srv.URL + "/cloud.qcow2"}, Checksum: checksum.Spec{File: sums, Type: tt.typ}, CacheDir: t.TempDir()}, fast()...)
				checkContent(t, res, image)
				if res.Algorithm != tt.want || !hasMessage(res, "The checksum file "+sums+" lists cloud.qcow2") {
					t.Errorf("%s: algorithm %s, messages %q", where, res.Algorithm, res.Messages)
				}
			}
		})
	}
	t.Run("mismatch", func(t *testing.T) {
		srv := files(t, map[string][]byte{"/cloud.qcow2": image, "/SUMS": []byte(sha256hex(other) + "  cloud.qcow2\n")})
		_, err := Fetch(context.Background(), Request{URLs: []string{srv.URL + "/cloud.qcow2"}, Checksum: checksum.Spec{File: srv.URL + "/SUMS"}, CacheDir: t.TempDir()}, fast()...)
		if !errors.Is(err, ErrChecksumMismatch) || !strings.Contains(err.Error(), srv.URL+"/SUMS (line 1)") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("not listed", func(t *testing.T) {
		srv := files(t, map[string][]byte{"/cloud.qcow2": image, "/SUMS": []byte(digest + "  other.qcow2\n")})
		_, err := Fetch(context.Background(), Request{URLs: []string{srv.URL + "/cloud.qcow2"}, Checksum: checksum.Spec{File: srv.URL + "/SUMS"}, CacheDir: t.TempDir()}, fast()...)
		var fe *Error
		if !errors.As(err, &fe) || fe.Kind != KindChecksum || !strings.Contains(err.Error(), `no entry for "cloud.qcow2"`) || !strings.Contains(err.Error(), `"other.qcow2"`) {
			t.Errorf("error %v", err)
		}
	})
	t.Run("sums file 404", func(t *testing.T) {
		srv := files(t, map[string][]byte{"/cloud.qcow2": image})
		_, err := Fetch(context.Background(), Request{URLs: []string{srv.URL + "/cloud.qcow2"}, Checksum: checksum.Spec{File: srv.URL + "/SUMS"}, CacheDir: t.TempDir()}, fast()...)
		var fe *Error
		if !errors.As(err, &fe) || fe.Kind != KindDownload || !strings.Contains(err.Error(), "checksum file "+srv.URL+"/SUMS: the server answered 404") {
			t.Errorf("error %v", err)
		}
	})
}

func TestSignedSumsFile(t *testing.T) {
	image := payload(50_000)
	sums := []byte(sha256hex(payload(10)) + "  other\n" + sha256hex(image) + "  img.qcow2\n")
	good, goodKey, _ := pgptest.Key(t, "Good Signer")
	evil, _, _ := pgptest.Key(t, "Evil Signer")
	tests := []struct {
		name    string
		sig     []byte
		key     []byte
		kind    Kind  // 0: success
		wantErr error // with kind
	}{
		{"good", pgptest.DetachSign(t, good, sums, true), goodKey, 0, nil},
		{"other key", pgptest.DetachSign(t, evil, sums, true), goodKey, KindChecksum, checksum.ErrBadSignature},
		{"not a key", pgptest.DetachSign(t, good, sums, true), []byte("hello"), KindInvalid, checksum.ErrBadKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := files(t, map[string][]byte{"/img.qcow2": image, "/SUMS": sums, "/SUMS.gpg": tt.sig})
			keyFile := filepath.Join(t.TempDir(), "key.asc")
			os.WriteFile(keyFile, tt.key, 0o644)
			spec := checksum.Spec{File: srv.URL + "/SUMS", Signature: srv.URL + "/SUMS.gpg", Key: keyFile}
			res, err := Fetch(context.Background(), Request{URLs: []string{srv.URL + "/img.qcow2"}, Checksum: spec, CacheDir: t.TempDir()}, fast()...)
			if tt.kind == 0 {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				checkContent(t, res, image)
				res.File.Close()
				if !hasMessage(res, "Good signature on the checksum file "+spec.File+" by Good Signer") {
					t.Errorf("%q", res.Messages)
				}
				return
			}
			var fe *Error
			if !errors.As(err, &fe) || fe.Kind != tt.kind || !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want kind %v and %v", err, tt.kind, tt.wantErr)
			}
		})
	}
}

func TestResolveChecksumLocalPath(t *testing.T) {
	dir := t.TempDir()
	sums := filepath.Join(dir, "SHA256SUMS")
	os.WriteFile(sums, []byte("SHA256 (disk.img) = "+sha256hex([]byte("x"))+"\n"), 0o644)
	exp, err := ResolveChecksum(context.Background(), checksum.Spec{File: sums}, []string{"disk.img"})
	if err != nil || exp.Digest != sha256hex([]byte("x")) || exp.Algorithm != "sha256" || exp.Line != 1 || exp.Name != "disk.img" {
		t.Errorf("%+v %v", exp, err)
	}
	var fe *Error
	if _, err := ResolveChecksum(context.Background(), checksum.Spec{File: sums, Type: "md5"}, []string{"disk.img"}); !errors.As(err, &fe) || fe.Kind != KindChecksum {
		t.Errorf("an md5 lookup of a sha256 line: %v", err)
	}
	if _, err := ResolveChecksum(context.Background(), checksum.Spec{File: sums, Signature: "s.gpg"}, []string{"disk.img"}); !errors.As(err, &fe) || fe.Kind != KindInvalid {
		t.Errorf("a signature without a key: %v", err)
	}
}
