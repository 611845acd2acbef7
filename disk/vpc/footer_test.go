package vpc

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// TestSizeAsQemuCreate: the virtual size of a disk asked to hold a size is
// the one qemu-img create gives, around every boundary of the CHS
// calculation and beyond the largest geometry.
func TestSizeAsQemuCreate(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	sizes := []int64{0, 1, 511, 512, 513, 1 << 20, 10<<20 + 1, 1000001, 1 << 30, 31 * 16 * 1024 * 512,
		65535*16*63*512 - 1, 65535 * 16 * 63 * 512, maxGeometrySectors*512 - 1, maxGeometrySectors * 512, maxGeometrySectors*512 + 1,
		128 << 30, 1 << 40, MaxVirtualSize}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 6 {
		sizes = append(sizes, rng.Int64N(200<<30))
	}
	for _, size := range sizes {
		for _, force := range []string{"off", "on"} {
			img := fmt.Sprintf("%s/%d-%s.vhd", dir, size, force)
			oracle.MustRun(t, "create", "-q", "-f", "vpc", "-o", "force_size="+force, img, fmt.Sprint(size))
			want := qemuInfo(t, img).VirtualSize
			got, _, err := Size(size, disk.CreateOptions{Options: map[string]string{"force_size": force}})
			if err != nil || got != want {
				t.Errorf("Size(%d, force_size=%s) = %d, %v; qemu-img create gives %d", size, force, got, err, want)
			}
		}
	}
}

// TestSizeIsKept: Create keeps a size Size returned (the pipeline asks
// Size first and creates with its answer), and the footer's geometry then
// reads back as that size.
func TestSizeIsKept(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 20000 {
		size := rng.Int64N(MaxVirtualSize)
		if i < 2000 {
			size = rng.Int64N(64 << 20)
		}
		for _, force := range []bool{false, true} {
			_, v1 := sizedGeometry((size+511)&^511, force)
			g, v2 := sizedGeometry(v1, force)
			if v1 != v2 {
				t.Fatalf("size %d (force %v): rounded to %d, then to %d", size, force, v1, v2)
			}
			app := "qemu"
			if force {
				app = "qem2"
			}
			if got := (footerInfo{creatorApp: app, currentSize: uint64(v2), geometry: g}).virtualSize(); got != uint64(v2) {
				t.Fatalf("size %d: the footer reads as %d bytes", v2, got)
			}
		}
	}
}

// TestVirtualSizeRule: qemu's rule, by creator and geometry.
func TestVirtualSizeRule(t *testing.T) {
	g := geometry{cylinders: 1000, heads: 16, sectors: 63}
	maxG := geometry{cylinders: 65535, heads: 16, sectors: 255}
	tests := []struct {
		app  string
		g    geometry
		size uint64
		want uint64
	}{
		{"vpc ", g, 600 << 20, uint64(g.total()) * 512},
		{"qemu", g, 600 << 20, uint64(g.total()) * 512},
		{"win ", g, 600<<20 + 7, 600 << 20},
		{"qem2", g, 600 << 20, 600 << 20},
		{"d2v ", g, 600 << 20, 600 << 20},
		{"CTXS", g, 600 << 20, 600 << 20},
		{"tap\x00", g, 600 << 20, 600 << 20},
		{"vpc ", maxG, 200 << 30, 200 << 30},
	}
	for _, tt := range tests {
		if got := (footerInfo{creatorApp: tt.app, geometry: tt.g, currentSize: tt.size}).virtualSize(); got != tt.want {
			t.Errorf("%q %+v %d: %d, want %d", tt.app, tt.g, tt.size, got, tt.want)
		}
	}
}

// TestSizeFixedZero: a fixed disk of nothing is refused (its footer would
// be at 0, where qemu-img looks for a dynamic disk's copy and fails).
func TestSizeFixedZero(t *testing.T) {
	for _, o := range []string{"fixed", "fixed,force_size=on"} {
		opt, _ := disk.ParseOptions("subformat=" + o)
		if _, _, err := Size(0, disk.CreateOptions{Options: opt}); !errors.Is(err, disk.ErrUnsupported) {
			t.Errorf("%s: Size(0) = %v", o, err)
		}
	}
	if got, _, err := Size(0, disk.CreateOptions{}); got != 0 || err != nil {
		t.Errorf("dynamic: Size(0) = %d, %v", got, err)
	}
}
