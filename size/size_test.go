package size

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

const (
	kib = int64(1) << 10
	mib = int64(1) << 20
	gib = int64(1) << 30
	tib = int64(1) << 40
	pib = int64(1) << 50
	eib = int64(1) << 60
)

var parseTests = []struct {
	in   string
	want int64
}{
	{"0", 0},
	{"512", 512},
	{"00012", 12}, // decimal, never octal
	{"08", 8},
	{"1b", 1},
	{"1B", 1},
	{"1k", kib},
	{"1K", kib},
	{"20G", 20 * gib},
	{"10g", 10 * gib},
	{"120G", 120 * gib},
	{"3m", 3 * mib},
	{"2T", 2 * tib},
	{"1P", pib},
	{"1E", eib},
	{"7E", 7 * eib},
	{"1.5G", gib + gib/2},
	{"1.5e", eib + eib/2},
	{".5K", 512},
	{"0.5K", 512},
	{"1.K", kib},
	{"1.", 1},
	{"1.0", 1},
	{"1.000B", 1},
	{"12.345M", 12944671}, // 12.345 MiB rounded to the byte
	{"1.0000001K", kib},
	{"0.0005K", 1},        // 0.512 bytes rounds up
	{"0.0004K", 0},        // 0.4096 bytes rounds down
	{"0.00048828125K", 1}, // exactly half a byte rounds up
	{"1.9999999999999999999999999999999999999999999999999999k", 2 * kib},
	{"1.999999999999999999999G", 2 * gib},
	{"7.99E", 9211842821808707328},
	{" 10G", 10 * gib},
	{"\t\n10G", 10 * gib},
	{"0x10", 16},
	{"0X1f", 31},
	{"0x1e", 30}, // e is a hex digit here, not exabytes
	{"0x7fffffffffffffff", math.MaxInt64},
	{"9223372036854775807", math.MaxInt64},
	{"1." + strings.Repeat("0", 350) + "1k", kib},
}

func TestParse(t *testing.T) {
	for _, tt := range parseTests {
		got, err := Parse(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in   string
		want error
		msg  string // a fragment of the message
	}{
		{"", ErrSyntax, `invalid size "": expected a number`},
		{"   ", ErrSyntax, "expected a number"},
		{"10GB", ErrSyntax, `invalid size "10GB": expected a number of bytes with an optional suffix B, K, M, G, T, P or E (in either case; powers of 1024), e.g. 20G or 1.5T`},
		{"ten", ErrSyntax, "expected a number"},
		{"10 G", ErrSyntax, "expected a number"},
		{"10G ", ErrSyntax, "expected a number"},
		{"10Gi", ErrSyntax, "expected a number"},
		{"10KiB", ErrSyntax, "expected a number"},
		{"1e3", ErrSyntax, "expected a number"},
		{"1.5e1k", ErrSyntax, "expected a number"},
		{"G", ErrSyntax, "expected a number"},
		{".", ErrSyntax, "expected a number"},
		{".k", ErrSyntax, "expected a number"},
		{"1..5G", ErrSyntax, "expected a number"},
		{"1,5G", ErrSyntax, "expected a number"},
		{"inf", ErrSyntax, "expected a number"},
		{"NaN", ErrSyntax, "expected a number"},
		{"0x", ErrSyntax, "expected a number"},
		{"0xg", ErrSyntax, "expected a number"},
		{"0b101", ErrSyntax, "expected a number"},
		{"10G\x00", ErrSyntax, "expected a number"},
		{"1.5", ErrSyntax, "a fractional size needs a suffix"},
		{"0.5", ErrSyntax, "a fractional size needs a suffix"},
		{"1.5B", ErrSyntax, "a fractional size needs a suffix"},
		{"1." + strings.Repeat("0", 350) + "1", ErrSyntax, "a fractional size needs a suffix"},
		{"0x10K", ErrSyntax, "a hexadecimal size takes no suffix or fraction"},
		{"0x1.8", ErrSyntax, "a hexadecimal size takes no suffix or fraction"},
		{"-1", ErrSyntax, "cannot be negative"},
		{" -1G", ErrSyntax, "cannot be negative"},
		{"+10G", ErrSyntax, `a leading "+" is not allowed`},
		{"8E", ErrRange, `invalid size "8E": too large`},
		{"16E", ErrRange, "too large"},
		{"15.9999999999999999999999999999999999999999999999999999E", ErrRange, "too large"},
		{"7.99999999999999999999E", ErrRange, "too large"}, // the fraction rounds to 1.0
		{"9223372036854775808", ErrRange, "too large"},
		{"18446744073709551615", ErrRange, "too large"},
		{"18446744073709551616", ErrRange, "too large"},
		{"99999999999999999999999999", ErrRange, "too large"},
		{"0x8000000000000000", ErrRange, "too large"},
		{"0x10000000000000000", ErrRange, "too large"},
		{"8388608T", ErrRange, "too large"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err == nil {
			t.Errorf("Parse(%q) = %d, nil; want an error", tt.in, got)
			continue
		}
		if !errors.Is(err, tt.want) {
			t.Errorf("Parse(%q) error %v; want it to wrap %v", tt.in, err, tt.want)
		}
		var se *Error
		if !errors.As(err, &se) || se.Value != tt.in {
			t.Errorf("Parse(%q) error %#v; want a *Error quoting the value", tt.in, err)
		}
		if !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("Parse(%q) error %q; want it to contain %q", tt.in, err, tt.msg)
		}
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0 B"},
		{1, "1 B"},
		{512, "512 B"},
		{1023, "1023 B"},
		{kib, "1 KiB"},
		{1536, "1.5 KiB"},
		{20 * gib, "20 GiB"},
		{gib + gib/2, "1.5 GiB"},
		{120 * gib, "120 GiB"},
		{gib - 1, "1 GiB"}, // 1023.999 MiB rounds to 1024 MiB: promoted
		{10*gib + 123*mib, "10.12 GiB"},
		{eib, "1 EiB"},
		{math.MaxInt64, "8 EiB"},
		{-512, "-512 B"},
		{-20 * gib, "-20 GiB"},
		{math.MinInt64, "-8 EiB"},
	}
	for _, tt := range tests {
		if got := Format(tt.in); got != tt.want {
			t.Errorf("Format(%d) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

// TestParseFormatRoundTrip: whole numbers of a unit survive Format then Parse
// once the space and "iB" are dropped.
func TestParseFormatRoundTrip(t *testing.T) {
	for _, n := range []int64{1, 7, kib, 3 * mib, 20 * gib, 5 * tib, 2 * pib, 7 * eib} {
		s := strings.TrimSuffix(strings.ReplaceAll(Format(n), " ", ""), "iB")
		got, err := Parse(s)
		if err != nil || got != n {
			t.Errorf("Parse(%q) from Format(%d) = %d, %v", s, n, got, err)
		}
	}
}

// TestParseAgainstQemuImg checks every case on which qemu-img 7.2 and later
// agree against the installed qemu-img create. Cases where qemu changed its
// mind in 8.0/8.1 (".5K", hex with a suffix, 50-digit fractions) and the
// signs we refuse on purpose are left out.
func TestParseAgainstQemuImg(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	sizeRE := regexp.MustCompile(`size=(\d+)`)
	cases := []string{
		"0", "512", "00012", "1b", "1k", "20G", "10g", "1.5G", "1.K", "1.", "12.345M", "1.0000001K",
		"0.0005K", "0x10", "1E", "7.99E", "9223372036854775807", " 10G",
		"", "10GB", "ten", "10 G", "10G ", "1e3", "1.5", "1.5B", "8E", "16E",
		"9223372036854775808", "18446744073709551616", "0x1.8",
	}
	for i, in := range cases {
		img := filepath.Join(dir, strconv.Itoa(i)+".img")
		out, errOut, _ := oracle.Run(t, "create", "-q", "-f", "raw", img, in)
		_ = os.Remove(img)
		// -q hides the "Formatting" line, so ask again without it only when
		// qemu accepted the size; a refused size prints "Invalid".
		qemuOK := !strings.Contains(errOut, "Invalid image size")
		var qemuSize int64
		if qemuOK {
			out, _, _ = oracle.Run(t, "create", "-f", "raw", img, in)
			_ = os.Remove(img)
			m := sizeRE.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("qemu-img create %q: no size in %q", in, out)
			}
			qemuSize, _ = strconv.ParseInt(m[1], 10, 64)
		}
		got, err := Parse(in)
		switch {
		case qemuOK && err != nil:
			t.Errorf("Parse(%q): %v; qemu-img accepts it as %d", in, err, qemuSize)
		case !qemuOK && err == nil:
			t.Errorf("Parse(%q) = %d; qemu-img refuses it: %s", in, got, strings.TrimSpace(errOut))
		case qemuOK && got != qemuSize:
			t.Errorf("Parse(%q) = %d; qemu-img says %d", in, got, qemuSize)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, tt := range parseTests {
		f.Add(tt.in)
	}
	for _, s := range []string{"10GB", "1.5", "0x10K", "+1", "-1", "8E", "1e3", ".5k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err != nil {
			var se *Error
			if !errors.As(err, &se) || !(errors.Is(err, ErrSyntax) || errors.Is(err, ErrRange)) {
				t.Fatalf("Parse(%q): untyped error %v", s, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("Parse(%q) = %d: negative", s, n)
		}
		_ = Format(n)
	})
}
