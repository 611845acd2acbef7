package checksum

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"
)

// MaxSumsSize bounds a checksum file; real ones are a few kilobytes, and a
// bigger one is a wrong URL (an ISO, an HTML mirror listing), not a list.
const MaxSumsSize = 16 << 20

// Errors from reading checksum files and looking names up in them.
var (
	ErrSumsTooLarge = errors.New("checksum file too large")
	ErrNoSums       = errors.New("no checksum lines found")
	ErrNotListed    = errors.New("file not listed in the checksum file")
	ErrAmbiguous    = errors.New("checksum file lists different digests for the file")
)

// SumsEntry is one digest line of a checksum file.
type SumsEntry struct {
	Algorithm string // hashlib name: from the tag (BSD), or guessed from the digest length (GNU)
	Guessed   bool   // Algorithm was guessed from the digest length
	Digest    string // lowercase hex
	Name      string // file name as written, without GNU's '*' marker; "" for a bare digest
	Line      int    // 1-based line number
}

// gnuLengths maps a GNU line's hex length to the coreutils tool that writes
// it. Other algorithms of the same length (sha3_256, blake2s...) are matched
// by length in Lookup when the caller names them.
var gnuLengths = map[int]string{
	32:  "md5",
	40:  "sha1",
	56:  "sha224",
	64:  "sha256",
	96:  "sha384",
	128: "sha512",
}

// bsdLine is `TAG (name) = hex` as written by `sha256sum --tag`, BSD
// `sha256` and `openssl dgst` ("SHA256(name)= hex"). The name is greedy so
// names with parentheses keep them.
var bsdLine = regexp.MustCompile(`^([A-Za-z0-9][A-Za-z0-9_/-]*) ?\((.*)\) ?= ?([0-9A-Fa-f]+)$`)

// ReadSums reads at most MaxSumsSize bytes from r and parses them with
// ParseSums.
func ReadSums(r io.Reader) ([]SumsEntry, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSumsSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading checksum file: %w", err)
	}
	return ParseSums(data)
}

// ParseSums parses a checksum file in GNU layout (`hex  name`, `hex *name`,
// coreutils' backslash-escaped names, or a bare `hex`) or BSD layout
// (`SHA256 (name) = hex`), mixed freely. Blank lines, `#` comments and the
// armor of a PGP clear-signed file (the BEGIN line, its Hash: headers, the
// signature block, "- " dash escapes) are skipped. Lines in neither layout,
// or with a digest of the wrong length for their tag, are skipped too, as
// `sha256sum -c` does; a file with no digest line at all is an error.
func ParseSums(data []byte) ([]SumsEntry, error) {
	if len(data) > MaxSumsSize {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrSumsTooLarge, MaxSumsSize)
	}
	var entries []SumsEntry
	const (
		body = iota
		armorHeader
		signature
	)
	state, clearSigned := body, false
	for i, raw := range bytes.Split(data, []byte("\n")) {
		line := strings.TrimSuffix(string(raw), "\r")
		switch state {
		case armorHeader: // "Hash: SHA256" lines up to the first blank line
			if strings.TrimSpace(line) == "" {
				state = body
			}
			continue
		case signature:
			if strings.HasPrefix(line, "-----END PGP SIGNATURE-----") {
				state = body
			}
			continue
		}
		switch {
		case strings.HasPrefix(line, "-----BEGIN PGP SIGNED MESSAGE-----"):
			state, clearSigned = armorHeader, true
			continue
		case strings.HasPrefix(line, "-----BEGIN PGP SIGNATURE-----"):
			state = signature
			continue
		case clearSigned && strings.HasPrefix(line, "- "):
			line = line[2:] // RFC 4880 7.1 dash-escaped text
		}
		line = strings.TrimLeft(line, " \t")
		if line == "" || line[0] == '#' {
			continue
		}
		if e, ok := parseBSD(line); ok {
			e.Line = i + 1
			entries = append(entries, e)
		} else if e, ok := parseGNU(line); ok {
			e.Line = i + 1
			entries = append(entries, e)
		}
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf(`%w (expected "HEX  NAME" or "SHA256 (NAME) = HEX" lines)`, ErrNoSums)
	}
	return entries, nil
}

func parseBSD(line string) (SumsEntry, bool) {
	m := bsdLine.FindStringSubmatch(strings.TrimRight(line, " \t"))
	if m == nil || m[2] == "" {
		return SumsEntry{}, false
	}
	a, err := find(m[1])
	if err != nil || len(m[3]) != 2*a.size {
		return SumsEntry{}, false
	}
	return SumsEntry{Algorithm: a.name, Digest: strings.ToLower(m[3]), Name: m[2]}, true
}

func parseGNU(line string) (SumsEntry, bool) {
	escaped := strings.HasPrefix(line, `\`)
	if escaped {
		line = line[1:]
	}
	n := 0
	for n < len(line) && isHex(line[n]) {
		n++
	}
	alg, ok := gnuLengths[n]
	if !ok {
		return SumsEntry{}, false
	}
	e := SumsEntry{Algorithm: alg, Guessed: true, Digest: strings.ToLower(line[:n])}
	rest := line[n:]
	if strings.TrimRight(rest, " \t") == "" {
		return e, !escaped // a bare digest, as in many IMAGE.sha256 files
	}
	// "hex  name" (text), "hex *name" (binary), or "hex name" as `md5 -r`.
	if rest[0] != ' ' {
		return SumsEntry{}, false
	}
	rest = rest[1:]
	if rest != "" && (rest[0] == ' ' || rest[0] == '*') {
		rest = rest[1:]
	}
	if escaped {
		var ok bool
		if rest, ok = unescapeName(rest); !ok {
			return SumsEntry{}, false
		}
	}
	if rest == "" {
		return SumsEntry{}, false
	}
	e.Name = rest
	return e, true
}

// unescapeName undoes coreutils' escaping of names holding a backslash,
// newline or carriage return (the line then starts with a backslash).
func unescapeName(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		i++
		if i == len(s) {
			return "", false
		}
		switch s[i] {
		case '\\':
			b.WriteByte('\\')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		default:
			return "", false
		}
	}
	return b.String(), true
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// Lookup finds the digest of fileName (a base name, such as the last part
// of the image URL) in entries. Names match exactly, then ignoring a leading
// "./", then by their last path element. A file with a single bare digest
// matches any name.
//
// algorithm, when not "", restricts the match: BSD entries must carry that
// tag, and GNU entries must have its digest length (their algorithm is then
// reported as the one asked for, since "64 hex digits" may be sha256 or
// sha3_256). With algorithm "" and entries of several algorithms for the
// file, the longest digest wins. Two different digests of one algorithm for
// one file are ErrAmbiguous.
func Lookup(entries []SumsEntry, fileName, algorithm string) (SumsEntry, error) {
	var want *hashAlgorithm
	if algorithm != "" {
		a, err := find(algorithm)
		if err != nil {
			return SumsEntry{}, err
		}
		want = a
	}
	matchAlg := func(e SumsEntry) (SumsEntry, bool) {
		switch {
		case want == nil:
			return e, true
		case e.Algorithm == want.name:
			return e, true
		case e.Guessed && len(e.Digest) == 2*want.size:
			e.Algorithm = want.name
			return e, true
		}
		return e, false
	}

	var found []SumsEntry
	for _, sameName := range []func(string) bool{
		func(n string) bool { return n == fileName },
		func(n string) bool { return strings.TrimPrefix(n, "./") == fileName },
		func(n string) bool { return n != "" && path.Base(n) == fileName },
	} {
		for _, e := range entries {
			if !sameName(e.Name) {
				continue
			}
			if e, ok := matchAlg(e); ok {
				found = append(found, e)
			}
		}
		if len(found) > 0 {
			break
		}
	}
	if len(found) == 0 && len(entries) == 1 && entries[0].Name == "" {
		if e, ok := matchAlg(entries[0]); ok {
			found = append(found, e)
		}
	}
	if len(found) == 0 {
		return SumsEntry{}, notListed(entries, fileName, algorithm)
	}

	best := found[0]
	for _, e := range found[1:] {
		if len(e.Digest) > len(best.Digest) {
			best = e
		}
	}
	for _, e := range found {
		if e.Algorithm == best.Algorithm && e.Digest != best.Digest {
			return SumsEntry{}, fmt.Errorf("%w %q: line %d says %s, line %d says %s",
				ErrAmbiguous, fileName, best.Line, best.Digest, e.Line, e.Digest)
		}
	}
	return best, nil
}

// notListed names a few of the listed files so a wrong URL is easy to spot.
func notListed(entries []SumsEntry, fileName, algorithm string) error {
	var names []string
	for _, e := range entries {
		if len(names) == 5 {
			names = append(names, "...")
			break
		}
		if e.Name != "" {
			names = append(names, fmt.Sprintf("%q", e.Name))
		}
	}
	what := fmt.Sprintf("%q", fileName)
	if algorithm != "" {
		what += " with a " + algorithm + " digest"
	}
	if len(names) == 0 {
		return fmt.Errorf("%w: no entry for %s", ErrNotListed, what)
	}
	return fmt.Errorf("%w: no entry for %s (it lists %s)", ErrNotListed, what, strings.Join(names, ", "))
}
