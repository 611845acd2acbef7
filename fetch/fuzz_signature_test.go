package fetch

import (
	"bytes"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Fuzz targets for what a malicious server or checksum file can hand the
// signature check: key files, detached and clear-signed signatures. The
// OpenPGP parsing is ProtonMail's; these targets make sure that nothing it
// is given through us panics or hangs.

// fuzzKey makes a signing key and its public key, armored and binary.
func fuzzKey(f *testing.F) (*openpgp.Entity, []byte, []byte) {
	e, err := openpgp.NewEntity("Fuzz Signer", "", "fuzz@example.org", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		f.Fatal(err)
	}
	var bin, arm bytes.Buffer
	if err := e.Serialize(&bin); err != nil {
		f.Fatal(err)
	}
	w, err := armor.Encode(&arm, openpgp.PublicKeyType, nil)
	if err != nil {
		f.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		f.Fatal(err)
	}
	w.Close()
	return e, arm.Bytes(), bin.Bytes()
}

func FuzzReadKeyRing(f *testing.F) {
	_, arm, bin := fuzzKey(f)
	f.Add(arm)
	f.Add(bin)
	f.Add(append(append([]byte(nil), arm...), arm...)) // two blocks, as distributions publish them
	f.Add([]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := readKeyRing(data)
		if err == nil {
			_ = describeKeys(keys)
		}
	})
}

func FuzzVerifySignature(f *testing.F) {
	e, arm, _ := fuzzKey(f)
	keyring, err := readKeyRing(arm)
	if err != nil {
		f.Fatal(err)
	}
	sums := []byte("b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c  disk.qcow2\n")
	var armored, binary, clear bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&armored, e, bytes.NewReader(sums), nil); err != nil {
		f.Fatal(err)
	}
	if err := openpgp.DetachSign(&binary, e, bytes.NewReader(sums), nil); err != nil {
		f.Fatal(err)
	}
	w, err := clearsign.Encode(&clear, e.PrivateKey, nil)
	if err != nil {
		f.Fatal(err)
	}
	w.Write(sums)
	w.Close()
	f.Add(sums, armored.Bytes())
	f.Add(sums, binary.Bytes())
	f.Add(clear.Bytes(), []byte(nil))
	f.Fuzz(func(t *testing.T, signed, sig []byte) {
		// The three ways verifySums checks a checksum file.
		openpgp.CheckArmoredDetachedSignature(keyring, bytes.NewReader(signed), bytes.NewReader(sig), nil)
		openpgp.CheckDetachedSignature(keyring, bytes.NewReader(signed), bytes.NewReader(sig), nil)
		if block, _ := clearsign.Decode(signed); block != nil {
			block.VerifySignature(keyring, nil)
		}
	})
}
