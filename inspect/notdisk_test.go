package inspect

import (
	"archive/tar"
	"bytes"
	"errors"
	"strings"
	"testing"
)

func tarOf(t *testing.T, name string) []byte {
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	w.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: 4})
	w.Write([]byte("data"))
	w.Close()
	return b.Bytes()
}

// TestNotADisk: what matches no format and is clearly not a disk is
// refused, saying what it looks like; raw disks, and anything declared
// raw, are not.
func TestNotADisk(t *testing.T) {
	mbr := make([]byte, 4096)
	mbr[510], mbr[511] = 0x55, 0xaa
	copy(mbr[446:], []byte{0x80, 0, 2, 0, 0x83})
	tests := []struct {
		name, content, want string
	}{
		{"empty", "", "an empty file"},
		{"html", "\n  <!DOCTYPE html>\n<html><body>Index of /images</body></html>", "an HTML page"},
		{"html without doctype", "<HTML><HEAD><TITLE>Login</TITLE></HEAD></HTML>", "an HTML page"},
		{"text", strings.Repeat("checksum  file.qcow2\n", 20), "a text file"},
		{"utf-8 text", strings.Repeat("Größe: 20 GiB — ok\n", 20), "a text file"},
		{"tar", string(tarOf(t, "notes.txt")), "a tar archive"},
		{"ova", string(tarOf(t, "appliance.ovf")), "an OVA appliance"},
		{"zip", "PK\x03\x04" + strings.Repeat("\x00", 100), "a ZIP archive"},
		{"mbr disk", string(mbr), ""},
		{"zeros", string(make([]byte, 8192)), ""},
		{"short binary", "\x00\x01", ""},
		{"short text, the whole file", "not a disk\n", "a text file"},
		{"one byte of a disk", "\xeb", ""},
	}
	for _, tt := range tests {
		r := strings.NewReader(tt.content)
		_, err := InspectAt(r, int64(len(tt.content)), "", Policy{})
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: %v; want it accepted as raw", tt.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrNotDisk) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "-if raw") {
			t.Errorf("%s: %v; want ErrNotDisk saying %q and how to take it anyway", tt.name, err, tt.want)
		}
		if tt.content != "" {
			if _, err := InspectAt(r, int64(len(tt.content)), "raw", Policy{}); err != nil {
				t.Errorf("%s declared raw: %v; want it taken", tt.name, err)
			}
		}
	}
}
