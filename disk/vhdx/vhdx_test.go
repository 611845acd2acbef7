package vhdx

import (
	"bytes"
	"testing"
)

func TestSniff(t *testing.T) {
	for _, tt := range []struct {
		file string
		want bool
	}{{"vhdxfile and more", true}, {"vhdxfil", false}, {"VHDXFILE", false}, {"", false}} {
		if got := Sniff(bytes.NewReader([]byte(tt.file)), int64(len(tt.file))); got != tt.want {
			t.Errorf("Sniff(%q) = %v, want %v", tt.file, got, tt.want)
		}
	}
}

// A GUID is stored with its first three fields little-endian ([MS-VHDX]
// 2.1 "GUID"), as RFC 4122 calls the Microsoft byte order.
func TestGUID(t *testing.T) {
	got := guid("8B7CA206-4790-4B9A-B8FE-575F050F886E")
	want := [16]byte{0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b, 0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e}
	if got != want || regionMetadata != want {
		t.Fatalf("guid = %x, want %x", got, want)
	}
}
