package fetch

import (
	"context"
	"net/http"
	"path/filepath"
	"time"
)

// Peek is what the cache holds of a URL and, when asked, what its server
// says of it, learnt without downloading it.
type Peek struct {
	Cached bool   // a complete copy is in the cache
	Path   string // the copy an image would be read from (decompressed when published compressed)
	SHA256 string // the cached download's SHA-256 as published
	Size   int64  // bytes as published: the cached copy's, else the server's Content-Length; -1 unknown
	// ImageSize is the cached copy's size once decompressed (Size when it
	// was not compressed); -1 when not cached.
	ImageSize int64
	// Current: the cached copy is the file the request names now (its
	// checksum value matches, or the server answered a conditional HEAD
	// with 304 or the same validators). Changed: the server has another
	// file. Neither: nobody could tell.
	Current, Changed bool
	// Asked: a HEAD request was made.
	Asked bool
}

// PeekURL looks at the cache entry of req's first URL and, with head, asks
// the server with one HEAD request (conditional when the cache has
// validators) whether its copy is current. It never downloads and never
// changes the cache. A failed HEAD is not an error: the answer is then
// "cannot tell".
func PeekURL(ctx context.Context, req Request, head bool, opts ...Option) (*Peek, error) {
	o := newOptions(opts)
	dir := req.CacheDir
	if dir == "" {
		d, err := DefaultCacheDir()
		if err != nil {
			return nil, err
		}
		dir = d
	}
	p := &Peek{Size: -1, ImageSize: -1}
	if len(req.URLs) == 0 {
		return p, nil
	}
	e := newEntry(filepath.Join(dir, "downloads"), req.URLs[0])
	m := e.loadMeta()
	if m != nil {
		p.Cached, p.SHA256, p.Size, p.ImageSize, p.Path = true, m.SHA256, m.Size, m.Size, e.download()
		if m.Compression != "" {
			p.Path, p.ImageSize = e.image(), m.ImageSize
		}
		if c := req.Checksum; c.Value != "" && c.File == "" {
			if got, ok := m.Digests[digestKey(c.Type, c.ReadBytes)]; ok && got == c.Value {
				p.Current = true // the checksum names the file: the server cannot change it
				return p, nil
			}
		}
	}
	if !head {
		return p, nil
	}
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r, err := http.NewRequestWithContext(hctx, http.MethodHead, req.URLs[0], nil)
	if err != nil {
		return p, nil
	}
	r.Header.Set("User-Agent", o.userAgent)
	r.Header.Set("Accept-Encoding", "identity")
	if m != nil && m.ETag != "" {
		r.Header.Set("If-None-Match", m.ETag)
	}
	if m != nil && m.LastModified != "" {
		r.Header.Set("If-Modified-Since", m.LastModified)
	}
	p.Asked = true
	resp, err := o.client.Do(r)
	if err != nil {
		return p, nil
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && m != nil:
		p.Current = true
	case resp.StatusCode == http.StatusOK && m != nil:
		sameTag := m.ETag != "" && resp.Header.Get("ETag") == m.ETag
		sameTime := m.ETag == "" && m.LastModified != "" && resp.Header.Get("Last-Modified") == m.LastModified && resp.ContentLength == m.Size
		p.Current = sameTag || sameTime
		p.Changed = !p.Current && (m.ETag != "" || m.LastModified != "")
	case resp.StatusCode == http.StatusOK && resp.ContentLength >= 0:
		p.Size = resp.ContentLength
	}
	return p, nil
}

// FreeSpace is the space left to an unprivileged user on dir's file
// system; false where it cannot be told.
func FreeSpace(dir string) (int64, bool) { return freeSpace(dir) }
