package size

import "testing"

// TestFormatQemu: the sizes qemu-img 7.2 info printed for these byte counts.
func TestFormatQemu(t *testing.T) {
	for _, tt := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{512, "512 B"},
		{1024000, "0.977 MiB"},
		{1034240, "0.986 MiB"},
		{1047552, "0.999 MiB"},
		{1048576, "1 MiB"},
		{2228224, "2.12 MiB"},
		{129453056, "123 MiB"},
		{200704, "196 KiB"},
		{3145728, "3 MiB"},
		{2 << 40, "2 TiB"},
	} {
		if got := FormatQemu(tt.n); got != tt.want {
			t.Errorf("FormatQemu(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}
