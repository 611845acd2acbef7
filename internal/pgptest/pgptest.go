// Package pgptest makes throwaway OpenPGP keys and signatures for the tests
// of the packages that verify signed checksum files.
package pgptest

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Key makes a signing key for name (EdDSA: fast to make), with the e-mail
// address name.lowercased@example.org, and returns it with its public key,
// armored and binary.
func Key(tb testing.TB, name string) (e *openpgp.Entity, armored, binary []byte) {
	tb.Helper()
	email := strings.ToLower(strings.ReplaceAll(name, " ", ".")) + "@example.org"
	e, err := openpgp.NewEntity(name, "", email, &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		tb.Fatal(err)
	}
	var bin, arm bytes.Buffer
	if err := e.Serialize(&bin); err != nil {
		tb.Fatal(err)
	}
	w, err := armor.Encode(&arm, openpgp.PublicKeyType, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		tb.Fatal(err)
	}
	w.Close()
	return e, arm.Bytes(), bin.Bytes()
}

// DetachSign returns e's detached signature of msg, armored or binary.
func DetachSign(tb testing.TB, e *openpgp.Entity, msg []byte, armored bool) []byte {
	tb.Helper()
	var buf bytes.Buffer
	var err error
	if armored {
		err = openpgp.ArmoredDetachSign(&buf, e, bytes.NewReader(msg), nil)
	} else {
		err = openpgp.DetachSign(&buf, e, bytes.NewReader(msg), nil)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// ClearSign returns msg clear-signed by e.
func ClearSign(tb testing.TB, e *openpgp.Entity, msg []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w, err := clearsign.Encode(&buf, e.PrivateKey, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := w.Write(msg); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}
