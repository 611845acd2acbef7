// Package location tells a URL from a path, the one way every package
// does: an input image, a checksum file, a signature or a key is downloaded
// when it is an http or https URL, and read from the file system otherwise.
package location

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// IsURL reports whether s names a download rather than a path: it starts
// with http:// or https://, in any case. It says what the user meant;
// CheckURL says whether that URL can be downloaded.
func IsURL(s string) bool {
	l := strings.ToLower(s)
	return strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://")
}

// CheckURL returns why raw cannot be downloaded, or nil: it must parse,
// use http or https, and name a host.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("invalid URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("unsupported URL scheme %q: use http or https", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("the URL has no host")
	}
	return nil
}

// Scheme returns the scheme of s when s looks like a URL of any scheme
// ("ftp://host/x", "s3://bucket/key"), so that a path that does not exist
// can be told from a URL we do not download.
func Scheme(s string) (string, bool) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || scheme == "" || rest == "" {
		return "", false
	}
	for i, c := range scheme {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return "", false
		}
	}
	return strings.ToLower(scheme), true
}

// knownSchemes are the schemes an input can have: downloads and
// containerDisks.
var knownSchemes = []string{"https", "http", "oci"}

// Misspelt returns the URL that s, a path that does not exist, most likely
// meant: one of our schemes with its "//" cut short ("oci:/registry/repo",
// "https:example.org/a"), which a shell or a hand easily makes.
func Misspelt(s string) (string, bool) {
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || strings.HasPrefix(rest, "//") {
		return "", false
	}
	scheme, rest = strings.ToLower(scheme), strings.TrimLeft(rest, "/")
	if !slices.Contains(knownSchemes, scheme) || rest == "" {
		return "", false
	}
	return scheme + "://" + rest, true
}
