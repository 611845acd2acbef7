package suggest

import "testing"

func TestClosest(t *testing.T) {
	keys := []string{"name", "size", "version", "format", "input"}
	tests := []struct{ typed, want string }{
		{"formt", "format"}, {"inptu", "input"}, {"szie", "size"}, {"verison", "version"},
		{"owner", ""}, {"x", ""}, {"output", ""},
	}
	for _, tt := range tests {
		if got := Closest(tt.typed, keys); got != tt.want {
			t.Errorf("Closest(%q) = %q, want %q", tt.typed, got, tt.want)
		}
	}
	if d := Distance("ab", "ba"); d != 1 {
		t.Errorf("a swap costs %d", d)
	}
}
