package jsonproto

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	genvm "github.com/ucphhpc/gen-vm-image-go"
)

// Response is the JSON result the Python tool prints, field for field; the
// fields are declared in sorted key order so that encoding/json writes them
// as Python's json.dumps(sort_keys=True) does.
type Response struct {
	Response        string   `json:"response"`
	ReturnCode      int      `json:"return_code"`
	Status          string   `json:"status"`
	VerboseMessages []string `json:"verbose_messages"`
}

// NewResponse builds the response for a run that returned err (nil for
// success), with msg as the response text on success. Verbose messages are
// included only when verbose is set, as in the Python tool.
func NewResponse(msg string, messages []string, verbose bool, err error) Response {
	r := Response{Response: msg, ReturnCode: genvm.CodeOf(err), Status: "success", VerboseMessages: []string{}}
	if err != nil {
		r.Status = "failed"
		r.Response = err.Error()
	}
	if verbose && len(messages) > 0 {
		r.VerboseMessages = append(r.VerboseMessages, messages...)
	}
	return r
}

// MarshalPython encodes r as Python's json.dumps(indent=4, sort_keys=True)
// does: four-space indent, no HTML escaping, non-ASCII as \uXXXX escapes.
func (r Response) MarshalPython() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "    ")
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("Failed to dump JSON: %w", err)
	}
	return asciiEscape(bytes.TrimRight(buf.Bytes(), "\n")), nil
}

// asciiEscape rewrites every non-ASCII rune as \uXXXX (with surrogate pairs
// above the BMP), as Python's ensure_ascii does. encoding/json output has
// non-ASCII runes only inside strings, so a plain rewrite is safe.
func asciiEscape(b []byte) []byte {
	if !hasNonASCII(b) {
		return b
	}
	out := make([]byte, 0, len(b)+16)
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r < utf8.RuneSelf:
			out = append(out, b[0])
		case r > 0xffff:
			r -= 0x10000
			out = fmt.Appendf(out, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			out = fmt.Appendf(out, `\u%04x`, r)
		}
		b = b[n:]
	}
	return out
}

func hasNonASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return true
		}
	}
	return false
}
