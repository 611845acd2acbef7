package disk

import (
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
)

// withRegistry gives a test an empty format table and puts the real one
// back afterwards.
func withRegistry(t *testing.T) {
	t.Helper()
	registry.Lock()
	saved, savedAliases := registry.formats, registry.aliases
	registry.formats, registry.aliases = map[string]Format{}, map[string]string{}
	registry.Unlock()
	t.Cleanup(func() {
		registry.Lock()
		registry.formats, registry.aliases = saved, savedAliases
		registry.Unlock()
	})
}

// magic sniffs a prefix at offset 0.
func magic(m string) func(io.ReaderAt, int64) bool {
	return func(r io.ReaderAt, _ int64) bool {
		b := make([]byte, len(m))
		n, _ := r.ReadAt(b, 0)
		return bytes.Equal(b[:n], []byte(m))
	}
}

func openNothing(io.ReaderAt, int64, OpenOptions) (Image, error) { return nil, errors.New("test") }

func createNothing(*os.File, int64, CreateOptions) (Writer, error) { return nil, errors.New("test") }

func blockSize(CreateOptions) int64 { return 4096 }

// register fills the table with: a generic format (like raw), a readable
// and writable one, a readable one, and one we only recognise.
func register(t *testing.T) {
	t.Helper()
	withRegistry(t)
	Register(Format{Name: "plain", Sniff: func(io.ReaderAt, int64) bool { return true }, Open: openNothing,
		Create: createNothing, BlockSize: blockSize, Generic: true})
	Register(Format{Name: "beta", Sniff: magic("BETA"), Open: openNothing, Create: createNothing, BlockSize: blockSize})
	Register(Format{Name: "alpha", Sniff: magic("ALPHA"), Open: openNothing})
	Register(Format{Name: "tail", Sniff: func(r io.ReaderAt, size int64) bool {
		b := make([]byte, 4)
		n, _ := r.ReadAt(b, size-4)
		return n == 4 && string(b) == "TAIL"
	}})
}

func TestRegisterRefusesMistakes(t *testing.T) {
	tests := []struct {
		name   string
		format Format
		panics string
	}{
		{"twice", Format{Name: "beta", Sniff: magic("B")}, "registered twice: beta"},
		{"no name", Format{Sniff: magic("X")}, "without a name"},
		{"no sniff", Format{Name: "x"}, "without a Sniff: x"},
		{"writable without a block size", Format{Name: "x", Sniff: magic("X"), Create: createNothing}, "without a BlockSize: x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			register(t)
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.Contains(s, tt.panics) {
					t.Fatalf("Register panicked with %v; want %q", r, tt.panics)
				}
			}()
			Register(tt.format)
		})
	}
}

func TestLookupAndLists(t *testing.T) {
	register(t)
	if f, ok := Lookup("beta"); !ok || f.Name != "beta" || f.Create == nil {
		t.Fatalf("Lookup(beta) = %+v, %v", f, ok)
	}
	if _, ok := Lookup("gamma"); ok {
		t.Fatal("Lookup of an unregistered name succeeded")
	}
	var names []string
	for _, f := range Formats() {
		names = append(names, f.Name)
	}
	if want := []string{"alpha", "beta", "plain", "tail"}; !slices.Equal(names, want) {
		t.Errorf("Formats = %v, want %v (sorted)", names, want)
	}
	if got, want := WritableFormats(), []string{"beta", "plain"}; !slices.Equal(got, want) {
		t.Errorf("WritableFormats = %v, want %v", got, want)
	}
	if got, want := ReadableFormats(), []string{"alpha", "beta", "plain"}; !slices.Equal(got, want) {
		t.Errorf("ReadableFormats = %v, want %v", got, want)
	}
}

func TestSniffAndDetect(t *testing.T) {
	register(t)
	tests := []struct {
		name    string
		content string
		sniffed []string
		detect  string
		err     error
	}{
		{"no magic: the generic format", "hello, world", nil, "plain", nil},
		{"one magic", "ALPHA and more", []string{"alpha"}, "alpha", nil},
		{"magic at the end", "data....TAIL", []string{"tail"}, "tail", nil},
		{"polyglot", "BETA data TAIL", []string{"beta", "tail"}, "", ErrUnsafe},
		{"empty", "", nil, "plain", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := strings.NewReader(tt.content)
			size := int64(len(tt.content))
			if got := Sniff(r, size); !slices.Equal(got, tt.sniffed) {
				t.Errorf("Sniff = %v, want %v", got, tt.sniffed)
			}
			got, err := Detect(r, size)
			if got != tt.detect || !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("Detect = %q, %v; want %q, %v", got, err, tt.detect, tt.err)
			}
			if err != nil && !strings.Contains(err.Error(), "beta tail") {
				t.Errorf("a polyglot refusal names the formats: %v", err)
			}
		})
	}
}

// Without a generic format, content no format claims is malformed.
func TestDetectWithoutGeneric(t *testing.T) {
	withRegistry(t)
	Register(Format{Name: "alpha", Sniff: magic("ALPHA")})
	if name, err := Detect(strings.NewReader("nothing"), 7); !errors.Is(err, ErrFormat) {
		t.Fatalf("Detect = %q, %v; want ErrFormat", name, err)
	}
}

// TestAliases: Lookup resolves an alias to its format, which keeps its
// name; WithAliases adds the aliases of the formats named; an alias that
// is already a name or an alias is a programming error.
func TestAliases(t *testing.T) {
	withRegistry(t)
	Register(Format{Name: "vpc", Aliases: []string{"vhd"}, Sniff: magic("conectix")})
	Register(Format{Name: "raw", Sniff: magic("")})
	if f, ok := Lookup("vhd"); !ok || f.Name != "vpc" {
		t.Fatalf("Lookup(vhd) = %q, %v", f.Name, ok)
	}
	if got := WithAliases([]string{"raw", "vpc"}); !slices.Equal(got, []string{"raw", "vpc", "vhd"}) {
		t.Fatalf("WithAliases = %v", got)
	}
	for _, f := range []Format{
		{Name: "vhd", Sniff: magic("x")},
		{Name: "other", Aliases: []string{"vhd"}, Sniff: magic("x")},
		{Name: "other2", Aliases: []string{"raw"}, Sniff: magic("x")},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%+v) did not panic", f)
				}
			}()
			Register(f)
		}()
	}
}
