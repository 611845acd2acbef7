// Package checksum verifies input images: hash algorithms named as Python's
// hashlib names them, file digests computed the way the Python gen-vm-image
// computes them, checksum ("SUMS") files in GNU and BSD layouts, and their
// OpenPGP signatures, detached or clear-signed.
//
// A Spec says how a file is verified, as a user gives it; Spec.Resolve
// turns it into the digest the file must have (Expected), reading the
// checksum file, signature and key it names through a ReadFunc, and opens
// nothing itself: package fetch passes one that downloads URLs, so that
// fetch depends on checksum and not the other way round.
package checksum

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"strings"

	"golang.org/x/crypto/blake2b"
	"golang.org/x/crypto/blake2s"
)

// ErrUnknownAlgorithm is wrapped by every error about an algorithm name.
var ErrUnknownAlgorithm = errors.New("unknown checksum algorithm")

// hashAlgorithm is one hashlib algorithm we can compute.
type hashAlgorithm struct {
	name    string   // hashlib's name, as hashlib.new(name).name reports it
	aliases []string // other spellings hashlib.new accepts (OpenSSL 3 names)
	size    int      // digest size in bytes
	new     func() hash.Hash
}

// algorithms is every fixed-length algorithm in hashlib.algorithms_guaranteed,
// in hashlib's documentation order. The aliases are the OpenSSL 3 names that
// hashlib.new also accepts (checked with Python 3.11 and OpenSSL 3.0).
var algorithms = [...]hashAlgorithm{
	{"md5", nil, md5.Size, md5.New},
	{"sha1", []string{"sha-1"}, sha1.Size, sha1.New},
	{"sha224", []string{"sha-224", "sha2-224"}, sha256.Size224, sha256.New224},
	{"sha256", []string{"sha-256", "sha2-256"}, sha256.Size, sha256.New},
	{"sha384", []string{"sha-384", "sha2-384"}, sha512.Size384, sha512.New384},
	{"sha512", []string{"sha-512", "sha2-512"}, sha512.Size, sha512.New},
	{"sha512_224", []string{"sha512-224", "sha-512/224", "sha2-512/224"}, sha512.Size224, sha512.New512_224},
	{"sha512_256", []string{"sha512-256", "sha-512/256", "sha2-512/256"}, sha512.Size256, sha512.New512_256},
	{"sha3_224", []string{"sha3-224"}, 28, func() hash.Hash { return sha3.New224() }},
	{"sha3_256", []string{"sha3-256"}, 32, func() hash.Hash { return sha3.New256() }},
	{"sha3_384", []string{"sha3-384"}, 48, func() hash.Hash { return sha3.New384() }},
	{"sha3_512", []string{"sha3-512"}, 64, func() hash.Hash { return sha3.New512() }},
	{"blake2b", []string{"blake2b512", "blake2b-512"}, blake2b.Size, newBlake2b},
	{"blake2s", []string{"blake2s256", "blake2s-256"}, blake2s.Size, newBlake2s},
}

// blake2 constructors only fail for a key longer than the block; we pass none.
func newBlake2b() hash.Hash {
	h, err := blake2b.New512(nil)
	if err != nil {
		panic(err)
	}
	return h
}

func newBlake2s() hash.Hash {
	h, err := blake2s.New256(nil)
	if err != nil {
		panic(err)
	}
	return h
}

// find looks a name up case-insensitively among names and aliases.
//
// hashlib itself is case-insensitive only for what OpenSSL resolves
// ("SHA256", "SHA3-256") and not for its built-in names ("SHA3_256" fails);
// accepting every case here is a harmless superset.
func find(name string) (*hashAlgorithm, error) {
	lower := strings.ToLower(name)
	for i := range algorithms {
		a := &algorithms[i]
		if lower == a.name {
			return a, nil
		}
		for _, alias := range a.aliases {
			if lower == alias {
				return a, nil
			}
		}
	}
	if strings.HasPrefix(lower, "shake") {
		return nil, fmt.Errorf("%w %q: SHAKE needs an output length, which a checksum type cannot give; use sha3_256 or sha3_512 instead", ErrUnknownAlgorithm, name)
	}
	return nil, fmt.Errorf("%w %q: use one of %s", ErrUnknownAlgorithm, name, strings.Join(Names(), ", "))
}

// New returns a new hash for a hashlib algorithm name such as "sha256",
// "sha3_512" or "blake2b". Names are matched case-insensitively, and the
// OpenSSL spellings hashlib.new also takes ("sha-256", "sha3-256",
// "sha512-224", "blake2b512") are accepted. blake2b and blake2s have
// hashlib's default digest sizes, 64 and 32 bytes.
func New(algorithm string) (hash.Hash, error) {
	a, err := find(algorithm)
	if err != nil {
		return nil, err
	}
	return a.new(), nil
}

// CanonicalName returns hashlib's own name for algorithm ("SHA-256" gives
// "sha256"), or the error New would give.
func CanonicalName(algorithm string) (string, error) {
	a, err := find(algorithm)
	if err != nil {
		return "", err
	}
	return a.name, nil
}

// Size returns the digest size in bytes of algorithm.
func Size(algorithm string) (int, error) {
	a, err := find(algorithm)
	if err != nil {
		return 0, err
	}
	return a.size, nil
}

// Names returns the canonical names of the supported algorithms, in hashlib's
// documentation order.
func Names() []string {
	names := make([]string, len(algorithms))
	for i, a := range algorithms {
		names[i] = a.name
	}
	return names
}
