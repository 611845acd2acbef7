package checksum

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Spec says how a file is verified, as the architecture file, the command
// line and the JSON request give it: a literal digest (Type and Value), or
// the digest a checksum (SUMS) file lists for the file (File), whose
// OpenPGP signature is checked when Key is given. The zero Spec verifies
// nothing. The JSON keys are the architecture file's.
type Spec struct {
	Type      string `json:"type"`      // hashlib name: sha256, sha512, ...; optional with File
	Value     string `json:"value"`     // expected hex digest, or "" with File
	File      string `json:"file"`      // URL or path of a checksum file, instead of Value
	Signature string `json:"signature"` // URL or path of File's detached signature (armored or binary)
	// Key is the URL or path of the OpenPGP public key(s) that must have
	// signed File: with Signature, or a clear-signed File without it.
	Key        string `json:"key"`
	BufferSize int    `json:"buffer_size"` // read size; 0 means DefaultBufferSize (never changes the digest)
	ReadBytes  int64  `json:"read_bytes"`  // hash only the first ReadBytes bytes; 0 means all
}

// ErrCannotMatch: the expected digest is not one the algorithm can give
// (not hexadecimal, or of another length): a checksum error before any
// byte is hashed.
var ErrCannotMatch = errors.New("the checksum cannot match")

// SpecError is a Spec that cannot work, found before anything is read.
// Missing tells a needed field that is absent (the reference's return code
// 4) from one that is wrong (code 5).
type SpecError struct {
	Missing bool
	Msg     string
	Err     error // the cause, if any (ErrUnknownAlgorithm)
}

func (e *SpecError) Error() string { return e.Msg }
func (e *SpecError) Unwrap() error { return e.Err }

// Validate checks the fields against each other; errors are *SpecError.
func (s Spec) Validate() error {
	invalid := func(err error, format string, args ...any) error {
		return &SpecError{Msg: fmt.Sprintf(format, args...), Err: err}
	}
	missing := func(format string, args ...any) error {
		return &SpecError{Missing: true, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case s.File != "" && s.Value != "":
		return invalid(nil, "Both a checksum value and a checksum file (%s) are given for the input; give only one", s.File)
	case s.File == "" && (s.Signature != "" || s.Key != ""):
		return invalid(nil, "A checksum signature or key is given without a checksum file to verify; give the checksum file too")
	case s.Signature != "" && s.Key == "":
		return missing("Missing attribute: a key to verify the signature %s of the checksum file %s with", s.Signature, s.File)
	case s.Value != "" && s.Type == "":
		return missing("Missing attribute: input_checksum_type in %s", s.Value)
	case s.Type != "" && s.Value == "" && s.File == "":
		return missing("Missing attribute: input_checksum for checksum type %s", s.Type)
	}
	if s.Type != "" {
		a, err := find(s.Type)
		if err != nil {
			return invalid(err, "Invalid checksum type: %v", err)
		}
		if v := strings.TrimSpace(s.Value); v != "" {
			if err := checkDigest(a, v); err != nil {
				return invalid(fmt.Errorf("%w: %w", ErrCannotMatch, err), "Invalid checksum: %v", err)
			}
		}
	}
	if s.BufferSize < 0 || s.ReadBytes < 0 {
		return invalid(nil, "Invalid checksum buffer size %d or read bytes %d: must be positive", s.BufferSize, s.ReadBytes)
	}
	return nil
}

// Expected is the digest a file must have: a Spec's Value, or the one its
// checksum file lists.
type Expected struct {
	Algorithm string // hashlib's name for it
	Digest    string // lowercase hex
	ReadBytes int64  // it is the digest of the first ReadBytes bytes; 0: of all
	Source    string // where Digest comes from, for messages: "the defined checksum", "SHA256SUMS (line 3)"

	// From a checksum file only:
	Name   string // the file name it is listed under
	Line   int    // its line in the checksum file
	Signer string // who signed the checksum file; "" when no key was given
}

// ReadFunc reads the small file at location (a URL or a path) whole, at
// most limit bytes; what names it in messages ("checksum file",
// "signature", "key"). Package fetch provides one that downloads URLs.
type ReadFunc func(ctx context.Context, location, what string, limit int64) ([]byte, error)

// MaxKeySize bounds a key or signature file; a distribution's whole
// keyring is well under a megabyte.
const MaxKeySize = 4 << 20

// Errors of Resolve, tested with errors.Is; the checksum file's own are
// those of ParseSums and Lookup.
var (
	ErrBadSignature = errors.New("bad signature")
	ErrBadKey       = errors.New("not an OpenPGP public key")
)

// Resolve returns the digest a file must have: s's Value, or the one s's
// checksum file lists for the first of names it lists, after checking the
// checksum file's signature when s.Key is given. It is nil when s verifies
// nothing. read reads the checksum file, the signature and the key; its
// errors are returned as they are. log, when not nil, is told what was
// found and checked.
func (s Spec) Resolve(ctx context.Context, names []string, read ReadFunc, log func(string)) (*Expected, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if s.Value != "" {
		alg, _ := CanonicalName(s.Type) // Validate found it
		return &Expected{Algorithm: alg, Digest: strings.ToLower(strings.TrimSpace(s.Value)), ReadBytes: s.ReadBytes,
			Source: "the defined checksum"}, nil
	}
	if s.File == "" {
		return nil, nil
	}
	say := func(format string, args ...any) {
		if log != nil {
			log(fmt.Sprintf(format, args...))
		}
	}
	data, err := read(ctx, s.File, "checksum file", MaxSumsSize)
	if err != nil {
		return nil, err
	}
	signed, signer := data, ""
	if s.Key != "" {
		if signed, signer, err = s.verifySignature(ctx, data, read, say); err != nil {
			return nil, err
		}
	}
	entries, err := ParseSums(signed)
	if err != nil {
		return nil, fmt.Errorf("Failed to read the checksum file %s: %w", s.File, err)
	}
	var firstErr error
	for _, name := range names {
		e, err := Lookup(entries, name, s.Type)
		if err == nil {
			say("The checksum file %s lists %s with the %s checksum %s (line %d)", s.File, name, e.Algorithm, e.Digest, e.Line)
			return &Expected{Algorithm: e.Algorithm, Digest: e.Digest, ReadBytes: s.ReadBytes,
				Source: fmt.Sprintf("%s (line %d)", s.File, e.Line), Name: name, Line: e.Line, Signer: signer}, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr == nil {
		firstErr = errors.New("no file name to look up")
	}
	return nil, fmt.Errorf("The checksum file %s has no checksum for %s: %w", s.File, strings.Join(names, " or "), firstErr)
}

// wordedError is an error with a message for people that matches a
// sentinel and wraps its cause.
type wordedError struct {
	msg  string
	errs []error
}

func (e *wordedError) Error() string   { return e.msg }
func (e *wordedError) Unwrap() []error { return e.errs }

func worded(sentinel, cause error, format string, args ...any) error {
	e := &wordedError{msg: fmt.Sprintf(format, args...), errs: []error{sentinel}}
	if cause != nil {
		e.errs = append(e.errs, cause)
	}
	return e
}

// checkDigest says why v cannot be a hex digest of a, naming the
// algorithms whose digests have v's length when that is the mistake.
func checkDigest(a *hashAlgorithm, v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i] | 0x20; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("%q is not a hexadecimal digest (%q at position %d)", cut(v, 80), v[i], i+1)
		}
	}
	if len(v) == 2*a.size {
		return nil
	}
	var fits []string
	for _, b := range algorithms {
		if 2*b.size == len(v) {
			fits = append(fits, b.name)
		}
	}
	hint := ""
	switch len(fits) {
	case 0:
	case 1:
		hint = fmt.Sprintf(": %s?", fits[0])
	default:
		hint = fmt.Sprintf(": one of %s?", strings.Join(fits, ", "))
	}
	return fmt.Errorf("a %s digest has %d hex digits, this one has %d%s", a.name, 2*a.size, len(v), hint)
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
