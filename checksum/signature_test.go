package checksum

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/internal/pgptest"
)

func TestResolveSignatures(t *testing.T) {
	image := []byte("the image")
	sums := []byte(hexOf([]byte("other")) + "  other\n" + hexOf(image) + "  img.qcow2\n")
	good, goodKey, goodBinary := pgptest.Key(t, "Good Signer")
	evil, evilKey, _ := pgptest.Key(t, "Evil Signer")
	tampered := bytes.Replace(sums, []byte("other"), []byte("OTHER"), 1)
	// A clear-signed file with an unsigned line added after the signature:
	// only the signed text may count.
	appended := append(pgptest.ClearSign(t, good, []byte(hexOf([]byte("other"))+"  other\n")), []byte(hexOf(image)+"  img.qcow2\n")...)

	tests := []struct {
		name       string
		sums, sig  []byte // sig nil: clear-signed
		key        []byte
		wantErr    error
		wantSigner string
	}{
		{"armored detached", sums, pgptest.DetachSign(t, good, sums, true), goodKey, nil, "Good Signer"},
		{"binary detached", sums, pgptest.DetachSign(t, good, sums, false), goodKey, nil, "Good Signer"},
		{"binary key", sums, pgptest.DetachSign(t, good, sums, true), goodBinary, nil, "Good Signer"},
		{"clear-signed", pgptest.ClearSign(t, good, sums), nil, goodKey, nil, "Good Signer"},
		{"other key", sums, pgptest.DetachSign(t, evil, sums, true), goodKey, ErrBadSignature, ""},
		{"tampered", tampered, pgptest.DetachSign(t, good, sums, true), goodKey, ErrBadSignature, ""},
		{"clear-signed by the other key", pgptest.ClearSign(t, evil, sums), nil, goodKey, ErrBadSignature, ""},
		{"not signed at all", sums, nil, goodKey, ErrBadSignature, ""},
		{"unsigned line after a clear-signed block", appended, nil, goodKey, ErrNotListed, ""},
		{"keyring with both", sums, pgptest.DetachSign(t, good, sums, true), append(append([]byte{}, evilKey...), goodKey...), nil, "Good Signer"},
		{"not a key", sums, pgptest.DetachSign(t, good, sums, true), []byte("hello"), ErrBadKey, ""},
	}
	fp := strings.ToUpper(hex.EncodeToString(good.PrimaryKey.Fingerprint[:]))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content := map[string][]byte{"SUMS": tt.sums, "key.asc": tt.key}
			spec := Spec{File: "SUMS", Key: "key.asc"}
			if tt.sig != nil {
				content["SUMS.gpg"] = tt.sig
				spec.Signature = "SUMS.gpg"
			}
			var msgs []string
			exp, err := spec.Resolve(context.Background(), []string{"img.qcow2"}, files(content), collect(&msgs))
			switch {
			case tt.wantErr == nil:
				if err != nil {
					t.Fatalf("error %v", err)
				}
				who := "Good Signer <good.signer@example.org> (fingerprint " + fp + ")"
				if exp.Digest != hexOf(image) || exp.Signer != who {
					t.Errorf("%+v", exp)
				}
				if !strings.Contains(strings.Join(msgs, "\n"), "Good signature on the checksum file SUMS by "+who) {
					t.Errorf("%q", msgs)
				}
			case !errors.Is(err, tt.wantErr):
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			case tt.wantErr == ErrBadSignature:
				if !strings.Contains(err.Error(), "expected key Good Signer <good.signer@example.org> (fingerprint "+fp+")") {
					t.Errorf("message does not name the expected key: %v", err)
				}
			case tt.wantErr == ErrBadKey:
				if !strings.Contains(err.Error(), "The key key.asc is not an OpenPGP public key") {
					t.Errorf("%v", err)
				}
			}
		})
	}
	t.Run("a downloaded key is said to be one", func(t *testing.T) {
		const keyURL = "https://example.org/key.asc"
		content := map[string][]byte{"SUMS": pgptest.ClearSign(t, good, sums), keyURL: goodKey}
		var msgs []string
		_, err := Spec{File: "SUMS", Key: keyURL}.Resolve(context.Background(), []string{"img.qcow2"}, files(content), collect(&msgs))
		if err != nil || !strings.Contains(strings.Join(msgs, "\n"), "The key "+keyURL+" was downloaded") {
			t.Errorf("%v %q", err, msgs)
		}
	})
}
