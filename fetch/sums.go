package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"

	"github.com/ucphhpc/gen-vm-image-go/checksum"
	"github.com/ucphhpc/gen-vm-image-go/internal/location"
)

// Expected is a digest found in a checksum file.
type Expected struct {
	Algorithm string // hashlib name
	Digest    string // lowercase hex
	Name      string // the file name it is listed under
	Line      int    // its line in the checksum file
	Signer    string // who signed the checksum file; "" when no key was given
}

// maxKeySize bounds a key file; a distribution's whole keyring is well
// under a megabyte.
const maxKeySize = 4 << 20

// LookupSums reads a checksum file (a URL or a path), verifies its OpenPGP
// signature when key is given (signature: a detached signature's URL or
// path; "" for a clear-signed checksum file), and returns the digest listed
// for the first of names it lists. algorithm, when not "", restricts the
// lookup to that algorithm. Errors are *Error.
func LookupSums(ctx context.Context, sumsFile, signature, key, algorithm string, names []string, opts ...Option) (Expected, error) {
	return lookupSums(ctx, newOptions(opts), sumsFile, signature, key, algorithm, names)
}

func lookupSums(ctx context.Context, o *options, sumsFile, signature, key, algorithm string, names []string) (Expected, error) {
	if signature != "" && key == "" {
		return Expected{}, newError(KindInvalid, signature, nil,
			"The signature %s of the checksum file %s needs a key to be verified with: give the signer's public key", signature, sumsFile)
	}
	if algorithm != "" {
		if _, err := checksum.CanonicalName(algorithm); err != nil {
			return Expected{}, newError(KindInvalid, sumsFile, err, "Invalid checksum type: %v", err)
		}
	}
	data, err := readLocation(ctx, o, sumsFile, "checksum file", checksum.MaxSumsSize)
	if err != nil {
		return Expected{}, err
	}
	signed, signer := data, ""
	if key != "" {
		if signed, signer, err = verifySums(ctx, o, data, sumsFile, signature, key); err != nil {
			return Expected{}, err
		}
	}
	entries, err := checksum.ParseSums(signed)
	if err != nil {
		return Expected{}, newError(KindChecksum, sumsFile, err, "Failed to read the checksum file %s: %v", sumsFile, err)
	}
	var firstErr error
	for _, name := range names {
		e, err := checksum.Lookup(entries, name, algorithm)
		if err == nil {
			o.say("The checksum file %s lists %s with the %s checksum %s (line %d)", sumsFile, name, e.Algorithm, e.Digest, e.Line)
			return Expected{Algorithm: e.Algorithm, Digest: e.Digest, Name: name, Line: e.Line, Signer: signer}, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr == nil {
		firstErr = errors.New("no file name to look up")
	}
	return Expected{}, newError(KindChecksum, sumsFile, firstErr, "The checksum file %s has no checksum for %s: %v", sumsFile, strings.Join(names, " or "), firstErr)
}

// verifySums checks the checksum file's signature with the keys in key and
// returns the text that is signed (for a clear-signed file, only that) and
// who signed it.
func verifySums(ctx context.Context, o *options, sums []byte, sumsFile, signature, key string) ([]byte, string, error) {
	keyData, err := readLocation(ctx, o, key, "key", maxKeySize)
	if err != nil {
		return nil, "", err
	}
	keyring, err := readKeyRing(keyData)
	if err != nil {
		return nil, "", newError(KindInvalid, key, err, "The key %s is not an OpenPGP public key: %v", key, err)
	}
	expected := describeKeys(keyring)
	if location.IsURL(key) {
		o.say("The key %s was downloaded: the signature is only as trustworthy as that download", key)
	}
	var signer *openpgp.Entity
	signed := sums
	if signature != "" {
		sig, err := readLocation(ctx, o, signature, "signature", maxKeySize)
		if err != nil {
			return nil, "", err
		}
		if bytes.Contains(sig[:min(len(sig), 1024)], []byte("-----BEGIN PGP SIGNATURE-----")) {
			signer, err = openpgp.CheckArmoredDetachedSignature(keyring, bytes.NewReader(sums), bytes.NewReader(sig), nil)
		} else {
			signer, err = openpgp.CheckDetachedSignature(keyring, bytes.NewReader(sums), bytes.NewReader(sig), nil)
		}
		if err != nil {
			return nil, "", newError(KindChecksum, signature, errors.Join(ErrBadSignature, err),
				"Bad signature: %s is not a valid signature of the checksum file %s by the expected key %s: %v", signature, sumsFile, expected, err)
		}
	} else {
		block, _ := clearsign.Decode(sums)
		if block == nil {
			return nil, "", newError(KindChecksum, sumsFile, ErrBadSignature,
				"Bad signature: the checksum file %s is not clear-signed, and no detached signature is given to verify it with the expected key %s", sumsFile, expected)
		}
		signer, err = block.VerifySignature(keyring, nil)
		if err != nil {
			return nil, "", newError(KindChecksum, sumsFile, errors.Join(ErrBadSignature, err),
				"Bad signature: the clear-signed checksum file %s is not validly signed by the expected key %s: %v", sumsFile, expected, err)
		}
		signed = block.Plaintext
	}
	who := describeKeys(openpgp.EntityList{signer})
	o.say("Good signature on the checksum file %s by %s", sumsFile, who)
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

// readLocation reads a small file (checksum file, signature, key) from a
// URL, with retries, or from a path; what names it in messages.
func readLocation(ctx context.Context, o *options, loc, what string, limit int64) ([]byte, error) {
	if !location.IsURL(loc) {
		f, err := os.Open(loc)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, newError(KindNotFound, loc, err, "Path not found: %s - error: the %s does not exist", loc, what)
			}
			return nil, newError(KindNotFound, loc, err, "Failed to read the %s %s: %v", what, loc, err)
		}
		defer f.Close()
		data, err := readSmallBody(f, limit)
		if err != nil {
			return nil, newError(KindChecksum, loc, err, "Failed to read the %s %s: %v", what, loc, err)
		}
		return data, nil
	}
	if err := location.CheckURL(loc); err != nil {
		return nil, newError(KindDownload, loc, err, "Failed to download the %s %s: %v", what, loc, err)
	}
	var data []byte
	err := retry(ctx, o, loc, func() error {
		r, err := o.get(ctx, loc, nil)
		if err != nil {
			return err
		}
		defer r.close()
		if r.resp.StatusCode != http.StatusOK {
			return retryable(r.resp)
		}
		data, err = readSmallBody(r.resp.Body, limit)
		if err != nil && !errors.Is(err, ErrTooLarge) {
			msg, _ := describeNetError(err)
			return transient(fmt.Errorf("%s: %w", msg, err))
		}
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, newError(KindDownload, loc, errors.Join(ErrInterrupted, err), "Interrupted while downloading the %s %s", what, loc)
		}
		return nil, newError(KindDownload, loc, err, "Failed to download the %s %s: %v", what, loc, err)
	}
	return data, nil
}
