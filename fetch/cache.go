package fetch

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/ucphhpc/gen-vm-image-go/internal/safefile"
)

// CacheDirEnv names the environment variable that overrides the default
// cache directory.
const CacheDirEnv = "GVI_CACHE_DIR"

// DefaultCacheDir is $GVI_CACHE_DIR when set, else gen-vm-image under the
// user's cache directory ($XDG_CACHE_HOME, or ~/.cache on Linux).
func DefaultCacheDir() (string, error) {
	if d := os.Getenv(CacheDirEnv); d != "" {
		return d, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory: %w; point --cache-dir or %s at a directory", err, CacheDirEnv)
	}
	// ~/.cache may be made, but not a home directory that does not exist
	// (a service account's, a container's): that is not ours to create.
	if os.Getenv("XDG_CACHE_HOME") == "" {
		if home, err := os.UserHomeDir(); err == nil {
			if _, err := os.Stat(home); err != nil {
				return "", fmt.Errorf("the home directory %s does not exist, so there is no %s to cache downloads in; point --cache-dir or %s at a directory", home, filepath.Join(base, "gen-vm-image"), CacheDirEnv)
			}
		}
	}
	return filepath.Join(base, "gen-vm-image"), nil
}

// entry is where one URL lives in the cache directory's downloads/ folder.
// Its key is the SHA-256 of the URL (128 bits of it) and, for people
// listing the folder, the URL's file name:
//
//	KEY.download          the file as published, complete and verified
//	KEY.image             its decompressed copy, for compressed downloads
//	KEY.json              what we know of it (entryMeta)
//	KEY.download.partial  a download in progress or interrupted
//	KEY.partial.json      how far it got (partialState), for resuming
//	KEY.image.partial     a decompression in progress (never resumed)
//	KEY.lock              held (flock) while the entry is looked at or changed
type entry struct {
	url  string
	base string // dir/KEY
}

func newEntry(dir, rawURL string) entry {
	sum := sha256.Sum256([]byte(rawURL))
	key := hex.EncodeToString(sum[:16])
	if name := safeName(fileName(rawURL)); name != "" {
		key += "-" + name
	}
	return entry{url: rawURL, base: filepath.Join(dir, key)}
}

func (e entry) download() string { return e.base + ".download" }
func (e entry) image() string    { return e.base + ".image" }
func (e entry) meta() string     { return e.base + ".json" }
func (e entry) partial() string  { return e.base + ".download.partial" }
func (e entry) state() string    { return e.base + ".partial.json" }
func (e entry) imagePartial() string {
	return e.base + ".image.partial"
}
func (e entry) lock() string { return e.base + ".lock" }

// fileName is the last element of a URL's path, unescaped: the name a
// checksum file lists it under.
func fileName(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	name := path.Base(u.Path)
	if name == "/" || name == "." {
		return ""
	}
	return name
}

// safeName keeps a readable, portable part of a file name.
func safeName(s string) string {
	var b strings.Builder
	for _, c := range s {
		if b.Len() >= 80 {
			break
		}
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
			b.WriteRune(c)
		default:
			b.WriteByte('_')
		}
	}
	return strings.TrimLeft(b.String(), ".")
}

// maxMetaSize bounds the metadata files we read back; ours are a few
// hundred bytes.
const maxMetaSize = 64 << 10

// entryMeta is KEY.json: what was downloaded, and which digests it was
// verified against.
type entryMeta struct {
	URL          string `json:"url"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	Size         int64  `json:"size"`                  // bytes as published
	Compression  string `json:"compression,omitempty"` // gzip, xz, bzip2, zstd
	ImageSize    int64  `json:"image_size,omitempty"`  // bytes once decompressed
	// SHA256 is the digest of KEY.download, always computed while it
	// downloads: a damaged copy is noticed before reuse even when no
	// checksum is given.
	SHA256 string `json:"sha256"`
	// ImageDigest is KEY.image's digest (imagedigest.go), for compressed
	// downloads.
	ImageDigest string    `json:"image_digest,omitempty"`
	Digests     digestMap `json:"digests,omitempty"` // digestKey -> lowercase hex
	Fetched     time.Time `json:"fetched"`
}

type digestMap map[string]string

// digestKey names a digest in entryMeta.Digests: "sha256", or
// "sha256:1000" for the first 1000 bytes only.
func digestKey(algorithm string, readBytes int64) string {
	if readBytes > 0 {
		return fmt.Sprintf("%s:%d", algorithm, readBytes)
	}
	return algorithm
}

// parseMeta reads KEY.json back, refusing anything that is not what we
// write: the cache directory is the user's, but a damaged file must give a
// cache miss, never a wrong hit.
func parseMeta(data []byte) (*entryMeta, error) {
	if len(data) > maxMetaSize {
		return nil, errors.New("cache metadata too large")
	}
	var m entryMeta
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("cache metadata: %w", err)
	}
	if m.URL == "" {
		return nil, errors.New("cache metadata: no url")
	}
	if m.Size < 0 || m.ImageSize < 0 {
		return nil, errors.New("cache metadata: negative size")
	}
	switch m.Compression {
	case "", "gzip", "xz", "bzip2", "zstd":
	default:
		return nil, fmt.Errorf("cache metadata: unknown compression %q", m.Compression)
	}
	if len(m.SHA256) != 64 || !isLowerHex(m.SHA256) {
		return nil, errors.New("cache metadata: no sha256 of the download (written by an older version)")
	}
	if d, ok := strings.CutPrefix(m.ImageDigest, imageDigestV); m.Compression != "" && (!ok || len(d) != 64 || !isLowerHex(d)) {
		return nil, errors.New("cache metadata: no digest of the decompressed copy")
	}
	for k, v := range m.Digests {
		if k == "" || v == "" || !isLowerHex(v) {
			return nil, fmt.Errorf("cache metadata: bad digest %q: %q", k, v)
		}
	}
	return &m, nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// partialState is KEY.partial.json: enough to resume KEY.download.partial
// safely: where its first Bytes bytes came from (the validators a resume
// must match) and their SHA-256, which they must still have when a later
// run takes them up. Bytes after the first Bytes are not kept.
type partialState struct {
	URL          string `json:"url"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	Total        int64  `json:"total"` // -1 when the server did not say
	Bytes        int64  `json:"bytes"`
	SHA256       string `json:"sha256"` // of the first Bytes bytes
}

func parseState(data []byte) (*partialState, error) {
	if len(data) > maxMetaSize {
		return nil, errors.New("partial download state too large")
	}
	var s partialState
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("partial download state: %w", err)
	}
	if s.URL == "" || s.Bytes < 0 || s.Total < -1 || (s.Total >= 0 && s.Bytes > s.Total) || len(s.SHA256) != 64 || !isLowerHex(s.SHA256) {
		return nil, errors.New("partial download state: inconsistent")
	}
	return &s, nil
}

// readSmall reads a metadata file, at most maxMetaSize+1 bytes. A link, a
// FIFO or another user's file is not ours: an error, so a miss.
func readSmall(name string) ([]byte, error) {
	f, err := safefile.OpenOwned(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxMetaSize+1))
}

// writeJSON replaces name atomically with v as JSON.
func writeJSON(name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// loadMeta returns the entry's metadata, or nil. Its files are checked
// when they are used (useCached).
func (e entry) loadMeta() *entryMeta {
	data, err := readSmall(e.meta())
	if err != nil {
		return nil
	}
	m, err := parseMeta(data)
	if err != nil || m.URL != e.url {
		return nil
	}
	return m
}

// loadState returns the partial download's state when it belongs to this
// URL, else nil.
func (e entry) loadState() *partialState {
	data, err := readSmall(e.state())
	if err != nil {
		return nil
	}
	s, err := parseState(data)
	if err != nil || s.URL != e.url {
		return nil
	}
	return s
}

// removePartial forgets a partial download.
func (e entry) removePartial() {
	os.Remove(e.partial())
	os.Remove(e.state())
	os.Remove(e.imagePartial())
}

// removeComplete forgets a complete entry (its metadata first, so that a
// crash half way leaves a miss, not a wrong hit).
func (e entry) removeComplete() {
	os.Remove(e.meta())
	os.Remove(e.download())
	os.Remove(e.image())
}

// checkCacheDir refuses a downloads directory that is a link (its target
// is not ours to fill) or that belongs to another user (who could plant
// anything in it).
func checkCacheDir(dir string) error {
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if st.Mode()&fs.ModeSymlink != 0 {
		return errors.New("it is a symbolic link; remove it, or point the cache at the directory it links to")
	}
	if !st.IsDir() {
		return errors.New("it is not a directory")
	}
	return checkDirOwner(st)
}
