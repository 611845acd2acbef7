// Package jsonproto is gen-vm-image's JSON protocol, for programs not
// written in Go (the role the Python tool plays as an initializer plugin
// of corc): the request they write, with the keys of that plugin call, and
// the result every command prints, byte for byte as the Python tool prints
// it (json.dumps(indent=4, sort_keys=True)).
package jsonproto

import (
	"context"
	"encoding/json"
	"io"
	"strings"

	genvm "github.com/ucphhpc/gen-vm-image-go"
	"github.com/ucphhpc/gen-vm-image-go/checksum"
)

// Request is what corc's initializer plugin hands the Python tool, as JSON:
// {name, size, version, input, format, output_directory, overwrite,
// verbose}. Input may be a path, URL or oci:// string, or an object like the
// architecture file's input section.
type Request struct {
	Name            string          `json:"name"`
	Size            json.RawMessage `json:"size"`
	Version         json.RawMessage `json:"version"`
	Input           json.RawMessage `json:"input"`
	Format          string          `json:"format"`
	OutputDirectory string          `json:"output_directory"`
	Overwrite       bool            `json:"overwrite"`
	Verbose         bool            `json:"verbose"`
	AllowShrink     bool            `json:"allow_shrink"`
	CacheDir        string          `json:"cache_dir"`
}

type requestInput struct {
	Path     string          `json:"path"`
	URL      json.RawMessage `json:"url"` // a string, or a list: the URL and its mirrors
	OCI      string          `json:"oci"` // a containerDisk: REGISTRY/REPO:TAG or @sha256:...
	Format   string          `json:"format"`
	Checksum *checksum.Spec  `json:"checksum"`
}

// maxRequestBytes bounds what we read from a plugin caller.
const maxRequestBytes = 1 << 20

// Serve reads one JSON request from r, generates the image and returns
// the response to print. Malformed JSON is return code 9. opts are given
// to genvm.Generate after the request's own (Options), so theirs win.
func Serve(ctx context.Context, r io.Reader, opts ...genvm.Option) Response {
	data, err := io.ReadAll(io.LimitReader(r, maxRequestBytes+1))
	if err != nil {
		return NewResponse("", nil, false, genvm.Errorf(genvm.CodeJSON, err, "Failed to read the JSON request: %v", err))
	}
	if len(data) > maxRequestBytes {
		return NewResponse("", nil, false, genvm.Errorf(genvm.CodeJSON, nil, "The JSON request is larger than %d bytes", maxRequestBytes))
	}
	var req Request
	if err := json.Unmarshal(data, &req); err != nil {
		return NewResponse("", nil, false, genvm.Errorf(genvm.CodeJSON, err, "Failed to parse the JSON request: %v", err))
	}
	spec, err := req.Spec()
	if err != nil {
		return NewResponse("", nil, req.Verbose, err)
	}
	res, err := genvm.Generate(ctx, spec, append(req.Options(), opts...)...)
	return NewResponse("", res.Messages, req.Verbose, err)
}

// Spec converts the request into a genvm.Spec.
func (req Request) Spec() (genvm.Spec, error) {
	s := genvm.Spec{Name: req.Name, Format: req.Format, OutputDirectory: req.OutputDirectory, Overwrite: req.Overwrite, AllowShrink: req.AllowShrink}
	var err error
	if s.Size, err = scalarString("size", req.Size); err != nil {
		return s, err
	}
	if s.Version, err = scalarString("version", req.Version); err != nil {
		return s, err
	}
	raw := strings.TrimSpace(string(req.Input))
	switch {
	case raw == "" || raw == "null" || raw == `""`:
	case strings.HasPrefix(raw, `"`):
		var v string
		if err := json.Unmarshal(req.Input, &v); err != nil {
			return s, genvm.Errorf(genvm.CodeInvalidAttribute, err, "Invalid attribute type for input: %v", err)
		}
		s.Input = genvm.NewInput(v)
	default:
		var in requestInput
		if err := json.Unmarshal(req.Input, &in); err != nil {
			return s, genvm.Errorf(genvm.CodeInvalidAttribute, err, "Invalid attribute type for input: must be a string or an object: %v", err)
		}
		s.Input = &genvm.Input{Path: in.Path, OCI: in.OCI, Format: in.Format}
		urls, err := requestURLs(in.URL)
		if err != nil {
			return s, err
		}
		if len(urls) > 0 {
			s.Input.URL, s.Input.Mirrors = urls[0], urls[1:]
		}
		s.Input.Checksum = in.Checksum
	}
	return s, nil
}

// Options are the genvm options the request asks for: its cache_dir.
func (req Request) Options() []genvm.Option {
	if req.CacheDir == "" {
		return nil
	}
	return []genvm.Option{genvm.WithCacheDir(req.CacheDir)}
}

// requestURLs reads an input's url: a string, or a list of the URL and
// its mirrors.
func requestURLs(raw json.RawMessage) ([]string, error) {
	v := strings.TrimSpace(string(raw))
	switch {
	case v == "" || v == "null" || v == `""`:
		return nil, nil
	case strings.HasPrefix(v, "["):
		var urls []string
		if err := json.Unmarshal(raw, &urls); err != nil {
			return nil, genvm.Errorf(genvm.CodeInvalidAttribute, err, "Invalid attribute type for input url: must be a string or a list of strings: %v", err)
		}
		return urls, nil
	default:
		var u string
		if err := json.Unmarshal(raw, &u); err != nil {
			return nil, genvm.Errorf(genvm.CodeInvalidAttribute, err, "Invalid attribute type for input url: must be a string or a list of strings: %v", err)
		}
		return []string{u}, nil
	}
}

// scalarString accepts a JSON string or number as written ("9.4", 9.4, 12).
func scalarString(what string, raw json.RawMessage) (string, error) {
	v := strings.TrimSpace(string(raw))
	switch {
	case v == "" || v == "null":
		return "", nil
	case strings.HasPrefix(v, `"`):
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", genvm.Errorf(genvm.CodeInvalidAttribute, err, "Invalid attribute type for %s: %v", what, err)
		}
		return s, nil
	case strings.ContainsAny(v[:1], "-0123456789"):
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return "", genvm.Errorf(genvm.CodeInvalidAttribute, err, "Invalid attribute type for %s: %v", what, err)
		}
		return n.String(), nil
	default:
		return "", genvm.Errorf(genvm.CodeInvalidAttribute, nil, "Invalid attribute type: %s for value: %s - must be a string", what, v)
	}
}
