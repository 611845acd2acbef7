package blockio

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
)

// shortReader returns at most max bytes per ReadAt, with a nil error, as
// io.ReaderAt allows.
type shortReader struct {
	r   io.ReaderAt
	max int
}

func (s shortReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := s.r.ReadAt(p[:min(len(p), s.max)], off)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func TestReadFull(t *testing.T) {
	data := []byte("0123456789")
	tests := []struct {
		name    string
		r       io.ReaderAt
		off     int64
		n       int
		want    string
		wantErr error
	}{
		{"whole", bytes.NewReader(data), 0, 10, "0123456789", nil},
		{"ends at EOF", bytes.NewReader(data), 6, 4, "6789", nil},
		{"past EOF", bytes.NewReader(data), 8, 4, "", io.ErrUnexpectedEOF},
		{"at EOF", bytes.NewReader(data), 10, 1, "", io.ErrUnexpectedEOF},
		{"short without error", shortReader{bytes.NewReader(data), 3}, 0, 5, "", io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := make([]byte, tt.n)
			err := ReadFull(tt.r, p, tt.off)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && string(p) != tt.want {
				t.Fatalf("read %q, want %q", p, tt.want)
			}
		})
	}
}

func TestReadPadded(t *testing.T) {
	data := []byte("abcdef")
	tests := []struct {
		name string
		off  int64
		n    int
		want string
	}{
		{"inside", 1, 3, "bcd"},
		{"across the end", 4, 4, "ef\x00\x00"},
		{"at the end", 6, 3, "\x00\x00\x00"},
		{"beyond the end", 100, 2, "\x00\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := bytes.Repeat([]byte{0xff}, tt.n) // stale bytes must be cleared
			if err := ReadPadded(bytes.NewReader(data), int64(len(data)), p, tt.off); err != nil {
				t.Fatal(err)
			}
			if string(p) != tt.want {
				t.Fatalf("read %q, want %q", p, tt.want)
			}
		})
	}
	// The bytes that exist must be read in full: a file shorter than its
	// stated size is an error, not zeros.
	if err := ReadPadded(bytes.NewReader(data), 10, make([]byte, 8), 0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a file shorter than its size: %v", err)
	}
}

func TestSourceRead(t *testing.T) {
	src := Source{R: bytes.NewReader([]byte("header..")), Size: 8}
	if b, err := src.Read("the header", 0, 6); err != nil || string(b) != "header" {
		t.Fatalf("Read = %q, %v", b, err)
	}
	tests := []struct {
		name   string
		src    Source
		off, n int64
		says   string
	}{
		{"beyond the end", src, 4, 8, "the table at offset 0x4 (8 bytes) lies beyond the end of the file (8 bytes)"},
		{"negative offset", src, -1, 1, "lies beyond the end"},
		{"negative length", src, 0, -1, "lies beyond the end"},
		{"offset overflowing", src, 1 << 62, 1 << 62, "lies beyond the end"},
		{"file shorter than its size", Source{R: bytes.NewReader([]byte("abc")), Size: 8}, 0, 8, "reading the table at offset 0x0: unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.src.Read("the table", tt.off, tt.n)
			if !errors.Is(err, disk.ErrFormat) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("err = %v; want disk.ErrFormat saying %q", err, tt.says)
			}
		})
	}
}

func TestIsZero(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 4096, 64 << 10, 64<<10 + 1, 200 << 10} {
		b := make([]byte, n)
		if !IsZero(b) {
			t.Fatalf("%d zero bytes: not zero", n)
		}
		// A single non-zero byte anywhere, including past the first
		// comparison window, makes it non-zero.
		for _, at := range []int{0, n / 2, n - 1} {
			if n == 0 {
				continue
			}
			b[at] = 1
			if IsZero(b) {
				t.Fatalf("%d bytes with byte %d set: zero", n, at)
			}
			b[at] = 0
		}
	}
}

func TestTableCache(t *testing.T) {
	var loads atomic.Int64
	load := func(key int64) func([]byte) error {
		return func(b []byte) error {
			loads.Add(1)
			b[0] = byte(key)
			return nil
		}
	}
	c := NewTableCache(4)
	for _, key := range []int64{1, 2, 1, 2} {
		b, err := c.Get(key, 8, load(key))
		if err != nil || b[0] != byte(key) || len(b) != 8 {
			t.Fatalf("Get(%d) = %v, %v", key, b, err)
		}
	}
	if n := loads.Load(); n != 2 {
		t.Fatalf("%d loads for two tables", n)
	}

	// The cache holds at most its capacity: walking 100 tables twice loads
	// every one twice.
	loads.Store(0)
	for range 2 {
		for key := int64(100); key < 200; key++ {
			if _, err := c.Get(key, 8, load(key)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := loads.Load(); n != 200 {
		t.Fatalf("%d loads; a cache of 4 tables must reload all 200", n)
	}
	if len(c.tables) > 4 || len(c.ring) > 4 {
		t.Fatalf("%d tables and %d slots kept; the bound is 4", len(c.tables), len(c.ring))
	}

	// A failed load is not cached: the next Get retries.
	boom := errors.New("transient")
	if _, err := c.Get(7, 8, func([]byte) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("Get = %v, want the load's error", err)
	}
	if b, err := c.Get(7, 8, load(7)); err != nil || b[0] != 7 {
		t.Fatalf("retry after a failure: %v, %v", b, err)
	}

	c.Clear()
	loads.Store(0)
	if _, err := c.Get(7, 8, load(7)); err != nil || loads.Load() != 1 {
		t.Fatalf("after Clear: %v, %d loads", err, loads.Load())
	}
}

// Goroutines that want the same missing table wait for one load.
func TestTableCacheConcurrentLoadsOnce(t *testing.T) {
	c := NewTableCache(16)
	var loads atomic.Int64
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := c.Get(42, 4, func(b []byte) error {
				loads.Add(1)
				<-release
				copy(b, "L2L2")
				return nil
			})
			if err != nil || string(b) != "L2L2" {
				t.Errorf("Get = %q, %v", b, err)
			}
		}()
	}
	close(release)
	wg.Wait()
	if n := loads.Load(); n != 1 {
		t.Fatalf("%d loads of one table", n)
	}
}

func TestPeek(t *testing.T) {
	r := bytes.NewReader([]byte("conectix"))
	for _, tt := range []struct {
		off  int64
		n    int
		want string
	}{{0, 4, "cone"}, {4, 8, "ctix"}, {8, 4, ""}, {100, 4, ""}} {
		if got := Peek(r, tt.off, tt.n); string(got) != tt.want {
			t.Errorf("Peek(%d, %d) = %q, want %q", tt.off, tt.n, got, tt.want)
		}
	}
}
