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
