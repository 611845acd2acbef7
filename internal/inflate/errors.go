package inflate

import (
	"errors"
	"fmt"
)

// Error is a failure to decode src, with where it happened.
type Error struct {
	// Format is "deflate", "zlib" or "zstd".
	Format string
	// Offset is a byte offset in src. For deflate and zlib it is the byte
	// that holds the first bit of what was refused (a block header, a
	// code, a header field, the checksum), or len(src) when the input
	// ends too soon (ErrTruncated). For zstd it is the start of the frame
	// that was refused, or len(src).
	Offset int64
	// Err is the cause: one of the Err variables below, possibly wrapped
	// with detail.
	Err error
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: at input byte %d: %v", e.Format, e.Offset, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// The classes of failure, for errors.Is.
var (
	// ErrTruncated: the input ends before the stream does.
	ErrTruncated = errors.New("data is truncated")
	// ErrShort: the stream ends, complete, before the output is full.
	ErrShort = errors.New("stream ends before the output is full")
	// ErrOverrun: the stream holds more output than dst has room for.
	ErrOverrun = errors.New("stream holds more output than the buffer")

	// Deflate (RFC 1951).
	ErrBlockType    = errors.New("invalid block type 3")
	ErrStoredLength = errors.New("stored block length check fails")
	ErrCodeLengths  = errors.New("invalid code lengths")
	ErrLitCode      = errors.New("invalid literal/length code")
	ErrDistCode     = errors.New("invalid distance code")
	ErrDistance     = errors.New("distance reaches before the start of the output")

	// zlib (RFC 1950).
	ErrHeader   = errors.New("invalid zlib header")
	ErrChecksum = errors.New("Adler-32 checksum mismatch")

	// zstd (RFC 8878).
	ErrFrame = errors.New("invalid zstd frame")
)

// The ways a dynamic block's code lengths (RFC 1951 3.2.7) are refused.
// errNoEnd and errPrecode are refusals of zlib that Go's compress/flate
// does not make; the fuzz tests tell them apart.
var (
	errCodeCount   = fmt.Errorf("%w: too many length or distance symbols", ErrCodeLengths)
	errPrecode     = fmt.Errorf("%w: over-subscribed or incomplete code lengths code", ErrCodeLengths)
	errNoPrecode   = fmt.Errorf("%w: no code lengths code", ErrCodeLengths)
	errRepeatFirst = fmt.Errorf("%w: repeated code length with no previous length", ErrCodeLengths)
	errRepeatPast  = fmt.Errorf("%w: code length repeat overruns the code", ErrCodeLengths)
	errNoEnd       = fmt.Errorf("%w: no end-of-block code", ErrCodeLengths)
	errLitLengths  = fmt.Errorf("%w: over-subscribed or incomplete literal/length code", ErrCodeLengths)
	errDistLengths = fmt.Errorf("%w: over-subscribed or incomplete distance code", ErrCodeLengths)
)

// errDistance is the error of a match that reaches before the output.
func errDistance(distance, op int) error {
	return fmt.Errorf("%w (distance %d, %d bytes of output)", ErrDistance, distance, op)
}
