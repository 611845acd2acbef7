package fetch

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
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
				res := fetchOK(t, Request{URLs: []string{srv.URL + "/cloud.qcow2"}, SumsFile: sums, Checksum: Checksum{Type: tt.typ}, CacheDir: t.TempDir()}, fast()...)
				checkContent(t, res, image)
				if res.Algorithm != tt.want || !hasMessage(res, "The checksum file "+sums+" lists cloud.qcow2") {
					t.Errorf("%s: algorithm %s, messages %q", where, res.Algorithm, res.Messages)
				}
			}
		})
	}
	t.Run("mismatch", func(t *testing.T) {
		srv := files(t, map[string][]byte{"/cloud.qcow2": image, "/SUMS": []byte(sha256hex(other) + "  cloud.qcow2\n")})
		_, err := Fetch(context.Background(), Request{URLs: []string{srv.URL + "/cloud.qcow2"}, SumsFile: srv.URL + "/SUMS", CacheDir: t.TempDir()}, fast()...)
		if !errors.Is(err, ErrChecksumMismatch) || !strings.Contains(err.Error(), srv.URL+"/SUMS (line 1)") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("not listed", func(t *testing.T) {
		srv := files(t, map[string][]byte{"/cloud.qcow2": image, "/SUMS": []byte(digest + "  other.qcow2\n")})
		_, err := Fetch(context.Background(), Request{URLs: []string{srv.URL + "/cloud.qcow2"}, SumsFile: srv.URL + "/SUMS", CacheDir: t.TempDir()}, fast()...)
		var fe *Error
		if !errors.As(err, &fe) || fe.Kind != KindChecksum || !strings.Contains(err.Error(), `no entry for "cloud.qcow2"`) || !strings.Contains(err.Error(), `"other.qcow2"`) {
			t.Errorf("error %v", err)
		}
	})
	t.Run("sums file 404", func(t *testing.T) {
		srv := files(t, map[string][]byte{"/cloud.qcow2": image})
		_, err := Fetch(context.Background(), Request{URLs: []string{srv.URL + "/cloud.qcow2"}, SumsFile: srv.URL + "/SUMS", CacheDir: t.TempDir()}, fast()...)
		var fe *Error
		if !errors.As(err, &fe) || fe.Kind != KindDownload || !strings.Contains(err.Error(), "checksum file "+srv.URL+"/SUMS: the server answered 404") {
			t.Errorf("error %v", err)
		}
	})
}

// signer is a throwaway OpenPGP key (EdDSA: fast to make).
func signer(t *testing.T, name string) (*openpgp.Entity, []byte) {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", strings.ToLower(strings.ReplaceAll(name, " ", "."))+"@example.org", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return e, buf.Bytes()
}

func TestSignatures(t *testing.T) {
	image := payload(50_000)
	sums := []byte(sha256hex(payload(10)) + "  other\n" + sha256hex(image) + "  img.qcow2\n")
	good, goodKey := signer(t, "Good Signer")
	evil, evilKey := signer(t, "Evil Signer")

	detached := func(e *openpgp.Entity, armored bool, msg []byte) []byte {
		var buf bytes.Buffer
		var err error
		if armored {
			err = openpgp.ArmoredDetachSign(&buf, e, bytes.NewReader(msg), nil)
		} else {
			err = openpgp.DetachSign(&buf, e, bytes.NewReader(msg), nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	clearSigned := func(e *openpgp.Entity, msg []byte) []byte {
		var buf bytes.Buffer
		w, err := clearsign.Encode(&buf, e.PrivateKey, nil)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(msg)
		w.Close()
		return buf.Bytes()
	}
	tampered := bytes.Replace(sums, []byte("other"), []byte("OTHER"), 1)
	// A clear-signed file with an unsigned line added after the signature:
	// only the signed text may count.
	appended := append(clearSigned(good, []byte(sha256hex(payload(10))+"  other\n")), []byte(sha256hex(image)+"  img.qcow2\n")...)

	tests := []struct {
		name       string
		sums, sig  []byte // sig nil: clear-signed
		key        []byte
		wantErr    error
		wantSigner string
	}{
		{"armored detached", sums, detached(good, true, sums), goodKey, nil, "Good Signer"},
		{"binary detached", sums, detached(good, false, sums), goodKey, nil, "Good Signer"},
		{"clear-signed", clearSigned(good, sums), nil, goodKey, nil, "Good Signer"},
		{"other key", sums, detached(evil, true, sums), goodKey, ErrBadSignature, ""},
		{"tampered", tampered, detached(good, true, sums), goodKey, ErrBadSignature, ""},
		{"clear-signed by the other key", clearSigned(evil, sums), nil, goodKey, ErrBadSignature, ""},
		{"not signed at all", sums, nil, goodKey, ErrBadSignature, ""},
		{"unsigned line after a clear-signed block", appended, nil, goodKey, errNotListedInTest, ""},
		{"keyring with both", sums, detached(good, true, sums), append(append([]byte{}, evilKey...), goodKey...), nil, "Good Signer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content := map[string][]byte{"/img.qcow2": image, "/SUMS": tt.sums}
			req := Request{SumsFile: "", CacheDir: t.TempDir()}
			srv := files(t, content)
			req.URLs = []string{srv.URL + "/img.qcow2"}
			req.SumsFile = srv.URL + "/SUMS"
			if tt.sig != nil {
				content["/SUMS.gpg"] = tt.sig
				req.Signature = srv.URL + "/SUMS.gpg"
			}
			keyFile := filepath.Join(t.TempDir(), "key.asc")
			os.WriteFile(keyFile, tt.key, 0o644)
			req.Key = keyFile
			res, err := Fetch(context.Background(), req, fast()...)
			switch {
			case tt.wantErr == nil:
				if err != nil {
					t.Fatalf("error %v", err)
				}
				checkContent(t, res, image)
				res.File.Close()
				if !hasMessage(res, "Good signature on the checksum file "+req.SumsFile+" by "+tt.wantSigner) {
					t.Errorf("%q", res.Messages)
				}
			case tt.wantErr == errNotListedInTest:
				if err == nil || !strings.Contains(err.Error(), `no entry for "img.qcow2"`) {
					t.Errorf("error %v", err)
				}
			default:
				var fe *Error
				if !errors.Is(err, tt.wantErr) || !errors.As(err, &fe) || fe.Kind != KindChecksum {
					t.Fatalf("error %v", err)
				}
				fp := strings.ToUpper(hex.EncodeToString(good.PrimaryKey.Fingerprint[:]))
				if !strings.Contains(err.Error(), "expected key Good Signer <good.signer@example.org> (fingerprint "+fp+")") {
					t.Errorf("message does not name the expected key: %v", err)
				}
			}
		})
	}
	t.Run("not a key", func(t *testing.T) {
		keyFile := filepath.Join(t.TempDir(), "key.asc")
		os.WriteFile(keyFile, []byte("hello"), 0o644)
		srv := files(t, map[string][]byte{"/img.qcow2": image, "/SUMS": sums, "/SUMS.gpg": detached(good, true, sums)})
		_, err := Fetch(context.Background(), Request{URLs: []string{srv.URL + "/img.qcow2"}, SumsFile: srv.URL + "/SUMS", Signature: srv.URL + "/SUMS.gpg", Key: keyFile, CacheDir: t.TempDir()}, fast()...)
		var fe *Error
		if !errors.As(err, &fe) || fe.Kind != KindInvalid || !strings.Contains(err.Error(), "is not an OpenPGP public key") {
			t.Errorf("error %v", err)
		}
	})
}

// errNotListedInTest marks a case that fails in the lookup, not the signature.
var errNotListedInTest = errors.New("not listed")

func TestLookupSumsLocalPath(t *testing.T) {
	dir := t.TempDir()
	sums := filepath.Join(dir, "SHA256SUMS")
	os.WriteFile(sums, []byte("SHA256 (disk.img) = "+sha256hex([]byte("x"))+"\n"), 0o644)
	exp, err := LookupSums(context.Background(), sums, "", "", "", []string{"disk.img"})
	if err != nil || exp.Digest != sha256hex([]byte("x")) || exp.Algorithm != "sha256" || exp.Line != 1 || exp.Name != "disk.img" {
		t.Errorf("%+v %v", exp, err)
	}
	if _, err := LookupSums(context.Background(), sums, "", "", "md5", []string{"disk.img"}); err == nil {
		t.Error("an md5 lookup found a sha256 line")
	}
}
