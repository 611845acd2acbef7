package vpc

import (
	"bytes"
	"testing"
)

func TestSniff(t *testing.T) {
	footer := append([]byte("conectix"), make([]byte, 504)...)
	body := make([]byte, 4096)
	tests := []struct {
		name string
		file []byte
		want bool
	}{
		{"dynamic: a footer copy at 0", append(bytes.Clone(footer), body...), true},
		{"fixed: the footer ends the file", append(bytes.Clone(body), footer...), true},
		{"old Virtual PC: a 511-byte footer", append(bytes.Clone(body), footer[:511]...), true},
		{"the cookie elsewhere", append(append(bytes.Clone(body), footer...), 0), false},
		{"shorter than the cookie", []byte("conec"), false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		if got := Sniff(bytes.NewReader(tt.file), int64(len(tt.file))); got != tt.want {
			t.Errorf("%s: Sniff = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// Checksum is the one's complement of the byte sum, the field itself left
// out (VHD specification, "Checksum").
func TestChecksum(t *testing.T) {
	b := []byte{1, 2, 3, 0xff, 0xff, 0xff, 0xff, 4}
	if got, want := Checksum(b, 3), ^uint32(1+2+3+4); got != want {
		t.Fatalf("Checksum = %#x, want %#x", got, want)
	}
}
