package genvm

import (
	"errors"
	"fmt"
)

// Return codes, as the Python gen-vm-image defines them; the CLI exits with
// them and the JSON result carries them.
const (
	CodeSuccess          = 0
	CodePathNotFound     = 1
	CodeLoadFailed       = 2
	CodeCreateFailed     = 3 // creating a path, or creating/converting an image
	CodeMissingAttribute = 4
	CodeInvalidAttribute = 5
	CodeChecksum         = 6
	CodeResize           = 7
	CodeCheck            = 8
	CodeJSON             = 9
	CodeDownload         = 10
)

// Error is what the library returns: a return code from the table above and
// a message a person can act on.
type Error struct {
	Code int
	Msg  string
	Err  error // the underlying cause, if any
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

func newError(code int, err error, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...), Err: err}
}

// Errorf returns an *Error with code, a message made as fmt.Sprintf makes
// it, and cause (nil for none), for callers that report their own failures
// with these return codes: the JSON protocol, the command line's checks.
func Errorf(code int, cause error, format string, args ...any) *Error {
	return newError(code, cause, format, args...)
}

// CodeOf returns the return code of err: 0 for nil, the code of a *Error,
// and CodeCreateFailed for anything else.
func CodeOf(err error) int {
	if err == nil {
		return CodeSuccess
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeCreateFailed
}
