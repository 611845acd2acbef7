package fetch

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in                string
		start, end, total int64
		ok                bool
	}{
		{"bytes 0-99/100", 0, 99, 100, true},
		{"bytes 50-99/*", 50, 99, -1, true},
		{"bytes */100", -1, -1, 100, true},
		{"bytes 100-99/100", 0, 0, 0, false},
		{"bytes 0-100/100", 0, 0, 0, false},
		{"bytes -1-5/10", 0, 0, 0, false},
		{"items 0-1/2", 0, 0, 0, false},
		{"bytes 0-1", 0, 0, 0, false},
		{"", 0, 0, 0, false},
	}
	for _, tt := range tests {
		s, e, n, ok := parseContentRange(tt.in)
		if ok != tt.ok || (ok && (s != tt.start || e != tt.end || n != tt.total)) {
			t.Errorf("%q: %d %d %d %v", tt.in, s, e, n, ok)
		}
	}
}

func TestSniffCompression(t *testing.T) {
	bz := []byte("BZh91AY&SY")
	tests := []struct {
		head []byte
		want string
	}{
		{[]byte{0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0}, "gzip"},
		{[]byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 0, 0, 0}, "xz"},
		{[]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0, 0, 0}, "zstd"},
		{bz, "bzip2"},
		{[]byte("BZh9xxxxxx"), ""},
		{[]byte("QFI\xfb\x00\x00\x00\x03\x00\x00"), ""},
		{make([]byte, 10), ""},
		{[]byte{0x1f}, ""},
	}
	for _, tt := range tests {
		if got := sniffCompression(tt.head); got != tt.want {
			t.Errorf("%q: %q, want %q", tt.head, got, tt.want)
		}
	}
}

func TestSparseWriter(t *testing.T) {
	data := payload(100_000)
	copy(data[5000:60000], make([]byte, 55000))
	data[len(data)-1] = 0
	f, err := os.Create(filepath.Join(t.TempDir(), "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := &sparseWriter{f: f}
	// Odd write sizes, so that blocks straddle writes.
	for off, n := 0, 1; off < len(data); n = n*3 + 1 {
		end := min(off+n, len(data))
		if _, err := w.Write(data[off:end]); err != nil {
			t.Fatal(err)
		}
		off = end
	}
	if err := w.finish(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(f.Name())
	if !bytes.Equal(got, data) {
		t.Fatalf("sparse copy differs (len %d)", len(got))
	}
}

func TestSafeName(t *testing.T) {
	for in, want := range map[string]string{
		"Rocky-9-GenericCloud.latest.x86_64.qcow2": "Rocky-9-GenericCloud.latest.x86_64.qcow2",
		"a b/c?d":     "a_b_c_d",
		"..hidden":    "hidden",
		"ünïcode.img": "_n_code.img",
	} {
		if got := safeName(in); got != want {
			t.Errorf("safeName(%q) = %q, want %q", in, got, want)
		}
	}
	if fileName("https://h/a/b%20c.qcow2?x=1") != "b c.qcow2" || fileName("https://h/") != "" {
		t.Error("fileName")
	}
}

func FuzzParseMeta(f *testing.F) {
	good, _ := json.Marshal(entryMeta{URL: "http://h/x", ETag: `"e"`, Size: 10, Compression: "xz", ImageSize: 20,
		SHA256: strings.Repeat("0f", 32), ImageDigest: imageDigestV + strings.Repeat("a0", 32),
		Digests: digestMap{"sha256": "00ff", "sha512:1000": "ab"}, Fetched: time.Unix(0, 0)})
	f.Add(good)
	f.Add([]byte(`{"url":"u","size":-1}`))
	f.Add([]byte(`{"url":"u","digests":{"sha256":"ZZ"}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseMeta(data)
		if err != nil {
			return
		}
		if m.URL == "" || m.Size < 0 || m.ImageSize < 0 || len(m.SHA256) != 64 || (m.Compression != "" && !strings.HasPrefix(m.ImageDigest, imageDigestV)) {
			t.Fatalf("accepted %+v", m)
		}
		for _, v := range m.Digests {
			if !isLowerHex(v) || v == "" {
				t.Fatalf("accepted digest %q", v)
			}
		}
	})
}

func FuzzParseState(f *testing.F) {
	good, _ := json.Marshal(partialState{URL: "http://h/x", Total: 100, Bytes: 50, SHA256: strings.Repeat("0f", 32)})
	f.Add(good)
	f.Add([]byte(`{"url":"u","total":-1,"bytes":5}`))
	f.Add([]byte(`{"url":"u","total":4,"bytes":5}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := parseState(data)
		if err != nil {
			return
		}
		if s.URL == "" || s.Bytes < 0 || s.Total < -1 || (s.Total >= 0 && s.Bytes > s.Total) || len(s.SHA256) != 64 {
			t.Fatalf("accepted %+v", s)
		}
	})
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-99/100", "bytes */5", "bytes 3-2/*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, end, total, ok := parseContentRange(s)
		if !ok || start == -1 {
			return
		}
		if start < 0 || end < start || (total >= 0 && end >= total) {
			t.Fatalf("%q: %d %d %d", s, start, end, total)
		}
	})
}
