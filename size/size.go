// Package size reads image sizes the way qemu-img does ("20G", "1.5T",
// "512", "0x1000") and renders sizes for people ("20 GiB").
//
// Parse follows do_strtosz in qemu's util/cutils.c (qemu 8.1 and later),
// which both `qemu-img create` and `qemu-img resize` use through cvtnum and
// parse_option_size, limited to int64 like qemu-img's cvtnum:
//
//   - decimal digits with an optional suffix B, K, M, G, T, P or E in either
//     case, each a power of 1024; no suffix means bytes;
//   - a decimal fraction ("1.5G", ".5K", "1.G") needs a suffix other than B,
//     and is rounded to the nearest byte, halves up;
//   - hexadecimal ("0x10000") takes neither suffix nor fraction;
//   - leading white space is skipped; anything after the suffix is an error,
//     so "10GB", "10 G", "1e3" and "ten" are refused;
//   - "08" is eight (decimal), never octal.
//
// One deliberate difference: a leading sign is refused. qemu-img create reads
// "+10G" as 10G but qemu-img resize reads it as "grow by 10G", and the Python
// tool passes the same string to both, so its meaning was never clear.
package size

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// Errors a *Error wraps; test with errors.Is.
var (
	ErrSyntax = errors.New("expected a number of bytes with an optional suffix B, K, M, G, T, P or E (in either case; powers of 1024), e.g. 20G or 1.5T")
	ErrRange  = errors.New("too large: the largest size is 9223372036854775807 bytes (8 EiB - 1 byte)")
)

// Error describes a size that could not be read.
type Error struct {
	Value  string // the size as written
	Reason string // a more specific explanation than Err's text, or ""
	Err    error  // ErrSyntax or ErrRange
}

func (e *Error) Error() string {
	reason := e.Reason
	if reason == "" {
		reason = e.Err.Error()
	}
	return fmt.Sprintf("invalid size %q: %s", e.Value, reason)
}

func (e *Error) Unwrap() error { return e.Err }

// multiplier returns the scale of a suffix letter, or 0 when c is none.
func multiplier(c byte) uint64 {
	switch c {
	case 'B', 'b':
		return 1
	case 'K', 'k':
		return 1 << 10
	case 'M', 'm':
		return 1 << 20
	case 'G', 'g':
		return 1 << 30
	case 'T', 't':
		return 1 << 40
	case 'P', 'p':
		return 1 << 50
	case 'E', 'e':
		return 1 << 60
	}
	return 0
}

// isCSpace is C's isspace in the C locale, which strtoull uses to skip
// leading blanks.
func isCSpace(c byte) bool {
	return c == ' ' || (c >= '\t' && c <= '\r')
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// Parse reads a size in bytes as qemu-img does (see the package comment).
func Parse(s string) (int64, error) {
	syntax := func(reason string) (int64, error) {
		return 0, &Error{Value: s, Reason: reason, Err: ErrSyntax}
	}
	tooLarge := func() (int64, error) { return 0, &Error{Value: s, Err: ErrRange} }

	i := 0
	for i < len(s) && isCSpace(s[i]) {
		i++
	}
	if i == len(s) {
		return syntax("")
	}
	switch s[i] {
	case '-':
		return syntax("a size cannot be negative")
	case '+':
		return syntax(`a leading "+" is not allowed (qemu-img create reads it as an absolute size, qemu-img resize as growth); write the size without it, e.g. 20G`)
	}

	if len(s)-i > 2 && s[i] == '0' && (s[i+1] == 'x' || s[i+1] == 'X') && isHexDigit(s[i+2]) {
		return parseHex(s, s[i+2:])
	}

	// Integral part, decimal, with overflow detection.
	start := i
	var whole uint64
	overflow := false
	for i < len(s) && isDigit(s[i]) {
		hi, lo := bits.Mul64(whole, 10)
		lo, carry := bits.Add64(lo, uint64(s[i]-'0'), 0)
		if hi != 0 || carry != 0 {
			overflow = true
		}
		whole = lo
		i++
	}
	intDigits := i - start

	// Fraction as 64-bit fixed point, the way qemu extracts it from strtod.
	var frac uint64
	fracDigits := 0
	hasPoint := i < len(s) && s[i] == '.'
	if hasPoint {
		i++
		fs := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		fracDigits = i - fs
		var roundedUp bool
		frac, roundedUp = fixedFraction(s[fs:i])
		if roundedUp {
			// Digits so close to 1 that the double is 1.0: qemu carries.
			if whole == math.MaxUint64 {
				overflow = true
			}
			whole++
		}
	}
	if intDigits == 0 && fracDigits == 0 {
		return syntax("")
	}
	if overflow {
		return tooLarge()
	}

	mul := uint64(1)
	if i < len(s) {
		if m := multiplier(s[i]); m != 0 {
			mul = m
			i++
		}
	}
	if i != len(s) {
		return syntax("")
	}
	if mul == 1 && frac != 0 {
		return syntax("a fractional size needs a suffix K, M, G, T, P or E, e.g. 1.5G")
	}

	// whole*mul + frac*mul/2^64, rounding the last half byte up.
	hi, total := bits.Mul64(whole, mul)
	if hi != 0 {
		return tooLarge()
	}
	fracBytes, fracLow := bits.Mul64(frac, mul)
	var carry uint64
	total, carry = bits.Add64(total, fracBytes, 0)
	total, carry2 := bits.Add64(total, fracLow>>63, 0)
	if carry != 0 || carry2 != 0 || total > math.MaxInt64 {
		return tooLarge()
	}
	return int64(total), nil
}

func isHexDigit(c byte) bool {
	return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// parseHex reads the digits after "0x"; qemu refuses a suffix or fraction
// on hexadecimal sizes ("0x1b" is 27, not one block).
func parseHex(s, digits string) (int64, error) {
	n := 0
	for n < len(digits) && isHexDigit(digits[n]) {
		n++
	}
	if n < len(digits) {
		if digits[n] == '.' || multiplier(digits[n]) != 0 {
			return 0, &Error{Value: s, Reason: "a hexadecimal size takes no suffix or fraction", Err: ErrSyntax}
		}
		return 0, &Error{Value: s, Err: ErrSyntax}
	}
	v, err := strconv.ParseUint(digits, 16, 64)
	if err != nil || v > math.MaxInt64 {
		return 0, &Error{Value: s, Err: ErrRange}
	}
	return int64(v), nil
}

// fixedFraction turns the digits after the point into qemu's 64-bit fixed
// point fraction: the nearest double, times 2^64, truncated. roundedUp
// reports the double rounding to exactly 1.0. A nonzero fraction too small
// for a normal double becomes 1, as qemu does on strtod's underflow, so that
// "1.000…001" with no suffix is still refused.
func fixedFraction(digits string) (frac uint64, roundedUp bool) {
	if strings.Trim(digits, "0") == "" {
		return 0, false
	}
	f, err := strconv.ParseFloat("0."+digits, 64)
	if err != nil {
		// Only a range error is possible for well-formed digits; treat it as
		// the smallest nonzero fraction like qemu's underflow path.
		return 1, false
	}
	if f == 1 {
		return 0, true
	}
	if f < 0x1p-1022 {
		return 1, false
	}
	return uint64(f * 0x1p64), false
}

// Format renders n bytes for people, in the largest binary unit that keeps
// the number at least 1, with at most two decimals: "20 GiB", "1.5 GiB",
// "512 B".
func Format(n int64) string {
	if n < 0 {
		// Negate through uint64 so math.MinInt64 survives.
		return "-" + formatUnsigned(uint64(-(n+1))+1)
	}
	return formatUnsigned(uint64(n))
}

var units = [...]string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}

func formatUnsigned(n uint64) string {
	if n < 1024 {
		return strconv.FormatUint(n, 10) + " B"
	}
	u := 0
	for u+1 < len(units) && n >= uint64(1)<<(10*(u+1)) {
		u++
	}
	v := float64(n) / float64(uint64(1)<<(10*u))
	// Rounding 1023.999 MiB to two decimals gives 1024; say 1 GiB instead.
	if math.Round(v*100)/100 >= 1024 && u+1 < len(units) {
		u++
		v /= 1024
	}
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64) + " " + units[u]
}

// FormatQemu spells a size as qemu-img info does (util/cutils.c
// size_to_str): three significant digits, ties to even, and the larger
// unit from 1000 of the smaller on ("0.977 MiB", "123 MiB", "2.12 MiB").
func FormatQemu(n int64) string {
	if n < 0 {
		return Format(n)
	}
	// frexp's exponent minus one is floor(log2(n*1024/1000)).
	_, exp := math.Frexp(float64(n) / (1000.0 / 1024.0))
	u := min((exp-1)/10, len(units)-1)
	if u < 0 {
		u = 0
	}
	v := float64(n) / float64(uint64(1)<<(10*u))
	return strconv.FormatFloat(v, 'g', 3, 64) + " " + units[u]
}
