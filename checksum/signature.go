package checksum

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"

	"github.com/ucphhpc/gen-vm-image-go/internal/location"
)

// The OpenPGP parsing is ProtonMail's; these functions choose what to call
// for the files distributions publish: key files holding several armored
// blocks, detached signatures armored or binary, clear-signed SUMS files.

var errNotClearSigned = errors.New("not clear-signed")

// verifySignature checks the checksum file's signature with the keys in
// s.Key and returns the text that is signed (for a clear-signed file, only
// that) and who signed it.
func (s Spec) verifySignature(ctx context.Context, sums []byte, read ReadFunc, say func(string, ...any)) ([]byte, string, error) {
	keyData, err := read(ctx, s.Key, "key", MaxKeySize)
	if err != nil {
		return nil, "", err
	}
	keyring, err := readKeyRing(keyData)
	if err != nil {
		return nil, "", worded(ErrBadKey, err, "The key %s is not an OpenPGP public key: %v", s.Key, err)
	}
	expected := describeKeys(keyring)
	if location.IsURL(s.Key) {
		say("The key %s was downloaded: the signature is only as trustworthy as that download", s.Key)
	}
	signed := sums
	var signer *openpgp.Entity
	if s.Signature != "" {
		sig, err := read(ctx, s.Signature, "signature", MaxKeySize)
		if err != nil {
			return nil, "", err
		}
		if signer, err = checkDetached(keyring, sums, sig); err != nil {
			return nil, "", worded(ErrBadSignature, err,
				"Bad signature: %s is not a valid signature of the checksum file %s by the expected key %s: %v", s.Signature, s.File, expected, err)
		}
	} else {
		signed, signer, err = checkClearSigned(keyring, sums)
		switch {
		case errors.Is(err, errNotClearSigned):
			return nil, "", worded(ErrBadSignature, nil,
				"Bad signature: the checksum file %s is not clear-signed, and no detached signature is given to verify it with the expected key %s", s.File, expected)
		case err != nil:
			return nil, "", worded(ErrBadSignature, err,
				"Bad signature: the clear-signed checksum file %s is not validly signed by the expected key %s: %v", s.File, expected, err)
		}
	}
	who := describeKeys(openpgp.EntityList{signer})
	say("Good signature on the checksum file %s by %s", s.File, who)
	return signed, who, nil
}

// readKeyRing reads binary keys, or armored key blocks: all of them, since
// a distribution's key file often holds several one after the other.
func readKeyRing(data []byte) (openpgp.EntityList, error) {
	const begin = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
	if !bytes.Contains(data, []byte(begin)) {
		return openpgp.ReadKeyRing(bytes.NewReader(data))
	}
	var all openpgp.EntityList
	blocks := bytes.Split(data, []byte(begin))
	for _, b := range blocks[1:] {
		keys, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(append([]byte(begin), b...)))
		if err != nil {
			return nil, err
		}
		all = append(all, keys...)
	}
	return all, nil
}

// checkDetached verifies sig, an armored or binary detached signature of
// signed, against keyring and returns the signer.
func checkDetached(keyring openpgp.EntityList, signed, sig []byte) (*openpgp.Entity, error) {
	if bytes.Contains(sig[:min(len(sig), 1024)], []byte("-----BEGIN PGP SIGNATURE-----")) {
		return openpgp.CheckArmoredDetachedSignature(keyring, bytes.NewReader(signed), bytes.NewReader(sig), nil)
	}
	return openpgp.CheckDetachedSignature(keyring, bytes.NewReader(signed), bytes.NewReader(sig), nil)
}

// checkClearSigned verifies a clear-signed file against keyring and returns
// only the text that is signed, and the signer: lines around the signed
// block count for nothing.
func checkClearSigned(keyring openpgp.EntityList, data []byte) ([]byte, *openpgp.Entity, error) {
	block, _ := clearsign.Decode(data)
	if block == nil {
		return nil, nil, errNotClearSigned
	}
	signer, err := block.VerifySignature(keyring, nil)
	if err != nil {
		return nil, nil, err
	}
	return block.Plaintext, signer, nil
}

// describeKeys names keys as people know them: user ID and fingerprint.
func describeKeys(keys openpgp.EntityList) string {
	var out []string
	for _, e := range keys {
		if e == nil || e.PrimaryKey == nil {
			continue
		}
		name := ""
		if id := e.PrimaryIdentity(); id != nil {
			name = id.Name + " "
		}
		out = append(out, fmt.Sprintf("%s(fingerprint %X)", name, e.PrimaryKey.Fingerprint))
	}
	if len(out) == 0 {
		return "(no key)"
	}
	return strings.Join(out, ", ")
}
