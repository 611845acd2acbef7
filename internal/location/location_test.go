package location

import (
	"strings"
	"testing"
)

func TestIsURL(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"https://example.org/a.qcow2", true},
		{"HTTP://example.org/a.qcow2", true},
		{"http:///a.qcow2", true}, // meant as a URL; CheckURL refuses it
		{"ftp://example.org/a.qcow2", false},
		{"images/http://a.qcow2", false},
		{"/srv/a.qcow2", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := IsURL(tt.in); got != tt.want {
			t.Errorf("IsURL(%q) = %t, want %t", tt.in, got, tt.want)
		}
	}
}

func TestCheckURL(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string
	}{
		{"https://example.org/a.qcow2", ""},
		{"HTTP://example.org/a.qcow2", ""},
		{"ftp://example.org/a", `unsupported URL scheme "ftp"`},
		{"a.qcow2", `unsupported URL scheme ""`},
		{"http:///a.qcow2", "no host"},
		{"http://[::1/a", "invalid URL"},
	}
	for _, tt := range tests {
		err := CheckURL(tt.in)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("CheckURL(%q) = %v", tt.in, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("CheckURL(%q) = %v, want %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestMisspelt(t *testing.T) {
	tests := []struct{ in, want string }{
		{"oci:/127.0.0.1:5000/vm/disk:1", "oci://127.0.0.1:5000/vm/disk:1"},
		{"https:/example.org/a.qcow2", "https://example.org/a.qcow2"},
		{"HTTP:example.org/a.qcow2", "http://example.org/a.qcow2"},
		{"https://example.org/a.qcow2", ""}, // spelt right
		{"images/a.qcow2", ""},
		{"c:/images/a.qcow2", ""},
		{"oci:", ""},
	}
	for _, tt := range tests {
		got, ok := Misspelt(tt.in)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("Misspelt(%q) = %q, %t; want %q", tt.in, got, ok, tt.want)
		}
	}
}
