package checksum

import (
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/internal/pgptest"
)

// Fuzz targets for what a malicious server or checksum file can hand the
// signature check: key files, detached and clear-signed signatures. The
// OpenPGP parsing is ProtonMail's; these targets make sure that nothing it
// is given through us panics or hangs, and that a signature we accept
// names its signer.

func FuzzReadKeyRing(f *testing.F) {
	_, arm, bin := pgptest.Key(f, "Fuzz Signer")
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
	e, arm, _ := pgptest.Key(f, "Fuzz Signer")
	keyring, err := readKeyRing(arm)
	if err != nil {
		f.Fatal(err)
	}
	sums := []byte("b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c  disk.qcow2\n")
	f.Add(sums, pgptest.DetachSign(f, e, sums, true))
	f.Add(sums, pgptest.DetachSign(f, e, sums, false))
	f.Add(pgptest.ClearSign(f, e, sums), []byte(nil))
	f.Fuzz(func(t *testing.T, signed, sig []byte) {
		// The two ways a checksum file is verified.
		if signer, err := checkDetached(keyring, signed, sig); err == nil && signer == nil {
			t.Fatal("a detached signature verified without a signer")
		}
		text, signer, err := checkClearSigned(keyring, signed)
		if err == nil && (signer == nil || len(text) > len(signed)) {
			t.Fatalf("a clear-signed file verified with signer %v and %d bytes of text from %d", signer, len(text), len(signed))
		}
	})
}
