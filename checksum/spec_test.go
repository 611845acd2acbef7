package checksum

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"strings"
	"testing"
)

func TestSpecValidate(t *testing.T) {
	tests := []struct {
		name    string
		spec    Spec
		missing bool
		msg     string // "" for a valid spec
	}{
		{"nothing", Spec{}, false, ""},
		{"value", Spec{Type: "sha256", Value: sha256Hex}, false, ""},
		{"file", Spec{File: "SUMS"}, false, ""},
		{"signed file", Spec{File: "SUMS", Signature: "SUMS.gpg", Key: "k.asc"}, false, ""},
		{"clear-signed file", Spec{File: "SUMS", Key: "k.asc"}, false, ""},
		{"value and file", Spec{Type: "sha256", Value: "00", File: "SUMS"}, false, "Both a checksum value and a checksum file (SUMS) are given for the input; give only one"},
		{"key without file", Spec{Key: "k.asc"}, false, "without a checksum file to verify"},
		{"signature with a value", Spec{Type: "sha256", Value: "00", Signature: "s.gpg"}, false, "without a checksum file to verify"},
		{"signature without key", Spec{File: "SUMS", Signature: "SUMS.gpg"}, true, "Missing attribute: a key to verify the signature SUMS.gpg of the checksum file SUMS with"},
		{"value without type", Spec{Value: "00"}, true, "Missing attribute: input_checksum_type in 00"},
		{"type alone", Spec{Type: "sha256"}, true, "Missing attribute: input_checksum for checksum type sha256"},
		{"unknown type", Spec{Type: "sha7", Value: "00"}, false, `Invalid checksum type: unknown checksum algorithm "sha7"`},
		{"negative read bytes", Spec{Type: "sha256", Value: strings.Repeat("00", 32), ReadBytes: -1}, false, "Invalid checksum buffer size 0 or read bytes -1: must be positive"},
		{"a sha512 digest for sha256", Spec{Type: "sha256", Value: strings.Repeat("ab", 64)}, false, "Invalid checksum: a sha256 digest has 64 hex digits, this one has 128: one of sha512, sha3_512, blake2b?"},
		{"a sha1 digest for sha256", Spec{Type: "sha256", Value: strings.Repeat("ab", 20)}, false, "has 40: sha1?"},
		{"not hex", Spec{Type: "md5", Value: strings.Repeat("zz", 16)}, false, `is not a hexadecimal digest ('z' at position 1)`},
		{"negative buffer size", Spec{File: "SUMS", BufferSize: -1}, false, "must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				return
			}
			var se *SpecError
			if !errors.As(err, &se) || se.Missing != tt.missing || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %v (%#v), want missing=%t with %q", err, se, tt.missing, tt.msg)
			}
		})
	}
	if err := (Spec{Type: "sha7", Value: "00"}).Validate(); !errors.Is(err, ErrUnknownAlgorithm) {
		t.Errorf("an unknown type does not wrap ErrUnknownAlgorithm: %v", err)
	}
}

// files is a ReadFunc over files held in memory; a missing one fails as
// a missing file does.
func files(content map[string][]byte) ReadFunc {
	return func(ctx context.Context, location, what string, limit int64) ([]byte, error) {
		data, ok := content[location]
		if !ok {
			return nil, &fs.PathError{Op: "open", Path: location, Err: fs.ErrNotExist}
		}
		if int64(len(data)) > limit {
			return nil, errors.New("too large")
		}
		return data, nil
	}
}

// collect is a log that keeps what it is told.
func collect(msgs *[]string) func(string) {
	return func(m string) { *msgs = append(*msgs, m) }
}

func hexOf(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

func TestResolve(t *testing.T) {
	ctx := context.Background()
	image := []byte("the image")
	sums := []byte(hexOf([]byte("other")) + "  other.img\nSHA256 (disk.img) = " + hexOf(image) + "\n")
	read := files(map[string][]byte{"SUMS": sums})

	t.Run("nothing to verify", func(t *testing.T) {
		if exp, err := (Spec{BufferSize: 4096}).Resolve(ctx, []string{"disk.img"}, read, nil); exp != nil || err != nil {
			t.Errorf("%+v %v", exp, err)
		}
	})
	t.Run("value", func(t *testing.T) {
		exp, err := Spec{Type: "SHA-256", Value: " " + strings.ToUpper(hexOf(image)) + "\n", ReadBytes: 7}.Resolve(ctx, nil, read, nil)
		if err != nil || *exp != (Expected{Algorithm: "sha256", Digest: hexOf(image), ReadBytes: 7, Source: "the defined checksum"}) {
			t.Errorf("%+v %v", exp, err)
		}
	})
	t.Run("checksum file", func(t *testing.T) {
		var msgs []string
		exp, err := Spec{File: "SUMS", ReadBytes: 5}.Resolve(ctx, []string{"missing.img", "disk.img"}, read, collect(&msgs))
		want := Expected{Algorithm: "sha256", Digest: hexOf(image), ReadBytes: 5, Source: "SUMS (line 2)", Name: "disk.img", Line: 2}
		if err != nil || *exp != want {
			t.Fatalf("%+v %v", exp, err)
		}
		if len(msgs) != 1 || msgs[0] != "The checksum file SUMS lists disk.img with the sha256 checksum "+hexOf(image)+" (line 2)" {
			t.Errorf("%q", msgs)
		}
	})
	t.Run("another algorithm", func(t *testing.T) {
		_, err := Spec{File: "SUMS", Type: "md5"}.Resolve(ctx, []string{"disk.img"}, read, nil)
		if !errors.Is(err, ErrNotListed) || !strings.Contains(err.Error(), `The checksum file SUMS has no checksum for disk.img: file not listed in the checksum file: no entry for "disk.img" with a md5 digest`) {
			t.Errorf("%v", err)
		}
	})
	t.Run("not a checksum file", func(t *testing.T) {
		_, err := Spec{File: "HTML"}.Resolve(ctx, []string{"disk.img"}, files(map[string][]byte{"HTML": []byte("<html>")}), nil)
		if !errors.Is(err, ErrNoSums) || !strings.HasPrefix(err.Error(), "Failed to read the checksum file HTML: ") {
			t.Errorf("%v", err)
		}
	})
	t.Run("read errors are returned as they are", func(t *testing.T) {
		_, err := Spec{File: "nope"}.Resolve(ctx, []string{"disk.img"}, read, nil)
		var pe *fs.PathError
		if !errors.As(err, &pe) || pe.Path != "nope" {
			t.Errorf("%v", err)
		}
	})
	t.Run("a spec that cannot work reads nothing", func(t *testing.T) {
		reads := 0
		counting := func(ctx context.Context, location, what string, limit int64) ([]byte, error) {
			reads++
			return read(ctx, location, what, limit)
		}
		_, err := Spec{File: "SUMS", Signature: "SUMS.gpg"}.Resolve(ctx, []string{"disk.img"}, counting, nil)
		var se *SpecError
		if !errors.As(err, &se) || reads != 0 {
			t.Errorf("%v after %d reads", err, reads)
		}
	})
}
