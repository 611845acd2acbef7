package checksum

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/internal/testcorpus"
)

// The Python tool's own test fixture facts (REFERENCE.md).
const (
	testQcow2SHA512          = "db12db337b0d1c82ab5b174c21241e0be24ee44a79e0d310aa05e3652e301a22bf604fd86c4cf9e4489bd512cab275feb8d8326847ca04b90e0903c72f39cb64"
	testQcow2SHA512First1000 = "1d7e67951f6b693b8f0ec66c7ad27743edb9088bee19b60cdd564abe0f3d1f36664299aa03ad4903e60fccdd60faf71b4eacb498c8c33da06bd5f6f33f7852ce"
)

func TestFileDigestCorpus(t *testing.T) {
	path := filepath.Join(testcorpus.Dir(t), "gen-vm-image", "test.qcow2")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("%s absent: %v", path, err)
	}
	tests := []struct {
		bufferSize int
		readBytes  int64
		want       string
	}{
		{0, 0, testQcow2SHA512},
		{DefaultBufferSize, 0, testQcow2SHA512},
		{1, 0, testQcow2SHA512},
		{4096, 0, testQcow2SHA512},
		{DefaultBufferSize, 1000, testQcow2SHA512First1000},
		{300, 1000, testQcow2SHA512First1000},
		{1000, 1000, testQcow2SHA512First1000},
		{1, 1000, testQcow2SHA512First1000},
		{0, 1 << 40, testQcow2SHA512}, // past the end: the whole file
		{1 << 30, 0, testQcow2SHA512}, // clamped buffer, same digest
	}
	for _, tt := range tests {
		got, err := FileDigest(context.Background(), path, "sha512", tt.bufferSize, tt.readBytes)
		if err != nil || got != tt.want {
			t.Errorf("FileDigest(buffer %d, read %d) = %s, %v; want %s", tt.bufferSize, tt.readBytes, got, err, tt.want)
		}
	}
}

// pythonHashsum is the Python tool's read loop, transcribed to learn what
// it hashes: the read size starts at min(buffer, readBytes), and once the
// next read would reach readBytes it shrinks to what is left; a read size of
// 0 stops. It returns the bytes it fed to the hash.
func pythonHashsum(data []byte, bufferSize int, readBytes int64) []byte {
	var fed []byte
	r := strings.NewReader(string(data))
	size := int64(bufferSize)
	var done int64
	if readBytes > 0 && size > readBytes {
		size = readBytes
	}
	for {
		chunk := make([]byte, size)
		n, _ := io.ReadFull(r, chunk)
		if n == 0 {
			return fed
		}
		fed = append(fed, chunk[:n]...)
		if readBytes > 0 {
			done += size // counts the size asked for, as Python does
			if done+size >= readBytes {
				size = readBytes - done
			}
			if size == 0 {
				return fed
			}
		}
	}
}

// TestFileDigestMatchesPythonLoop checks the documented rule (exactly the
// first min(readBytes, file size) bytes; buffer size irrelevant) against the
// transcribed loop for many shapes.
func TestFileDigestMatchesPythonLoop(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, fileSize := range []int{0, 1, 99, 100, 101, 1000, 4097} {
		data := make([]byte, fileSize)
		for i := range data {
			data[i] = byte(rng.UintN(256))
		}
		path := filepath.Join(dir, "f")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, bufferSize := range []int{1, 2, 3, 7, 64, 100, 333, 1000, 65536} {
			for _, readBytes := range []int64{0, 1, 2, 50, 99, 100, 101, 999, 1000, 1001, 5000} {
				fed := pythonHashsum(data, bufferSize, readBytes)
				want := data
				if readBytes > 0 && readBytes < int64(len(data)) {
					want = data[:readBytes]
				}
				if string(fed) != string(want) {
					t.Fatalf("python loop (file %d, buffer %d, read %d) fed %d bytes; rule says %d",
						fileSize, bufferSize, readBytes, len(fed), len(want))
				}
				sum := sha256.Sum256(fed)
				got, err := FileDigest(context.Background(), path, "sha256", bufferSize, readBytes)
				if err != nil || got != hex.EncodeToString(sum[:]) {
					t.Fatalf("FileDigest(file %d, buffer %d, read %d) = %s, %v; want %x",
						fileSize, bufferSize, readBytes, got, err, sum)
				}
			}
		}
	}
}

func TestFileDigestErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte(fox), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := FileDigest(ctx, path, "sha-3", 0, 0); !errors.Is(err, ErrUnknownAlgorithm) {
		t.Errorf("unknown algorithm: %v", err)
	}
	if _, err := FileDigest(ctx, filepath.Join(dir, "missing"), "sha256", 0, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := FileDigest(ctx, path, "sha256", -1, 0); err == nil || !strings.Contains(err.Error(), "buffer size -1") {
		t.Errorf("negative buffer: %v", err)
	}
	if _, err := FileDigest(ctx, path, "sha256", 0, -5); err == nil || !strings.Contains(err.Error(), "read bytes -5") {
		t.Errorf("negative read bytes: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := FileDigest(cancelled, path, "sha256", 0, 0); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if _, err := FileDigest(ctx, dir, "sha256", 0, 0); err == nil {
		t.Error("a directory: no error")
	}
}

func TestEqual(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"abc123", "abc123", true},
		{"ABC123", "abc123", true},
		{" abc123\n", "abc123", true},
		{"abc123", "\tABC123 ", true},
		{"abc123", "abc124", false},
		{"abc123", "abc1234", false},
		{"", "", false},
		{" ", "", false},
		{"", "abc", false},
	}
	for _, tt := range tests {
		if got := Equal(tt.a, tt.b); got != tt.want {
			t.Errorf("Equal(%q, %q) = %v; want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestNewLimited(t *testing.T) {
	data := []byte(strings.Repeat(fox, 100))
	for _, readBytes := range []int64{-1, 0, 1, 43, 44, 1000, int64(len(data)), 1 << 40} {
		for _, chunk := range []int{1, 7, 43, 4096} {
			h := sha256.New()
			w := NewLimited(h, readBytes)
			for off := 0; off < len(data); off += chunk {
				p := data[off:min(off+chunk, len(data))]
				n, err := w.Write(p)
				if n != len(p) || err != nil {
					t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(p))
				}
			}
			want := data
			if readBytes > 0 && readBytes < int64(len(data)) {
				want = data[:readBytes]
			}
			sum := sha256.Sum256(want)
			if got := h.Sum(nil); string(got) != string(sum[:]) {
				t.Errorf("NewLimited(read %d) in chunks of %d hashed the wrong bytes", readBytes, chunk)
			}
		}
	}
}
