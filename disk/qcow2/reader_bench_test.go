package qcow2

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// rdBenchImage converts 64 MiB of half-compressible data (text mixed with
// random bytes, like a filesystem) with qemu-img, compressed or not.
func rdBenchImage(b *testing.B, opts string, compress bool) string {
	b.Helper()
	oracle.QemuImg(b)
	dir := b.TempDir()
	raw := filepath.Join(dir, "bench.raw")
	data := make([]byte, 64<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	words := []string{"kernel ", "initrd ", "usr/lib/", "systemd ", "0x7f ", "libc.so.6 ", "\n", "\x00\x00\x00\x00"}
	for i := 0; i < len(data); {
		if rng.IntN(8) == 0 {
			end := min(len(data), i+rng.IntN(512))
			for ; i < end; i++ {
				data[i] = byte(rng.Uint32())
			}
			continue
		}
		i += copy(data[i:], words[rng.IntN(len(words))])
	}
	if err := os.WriteFile(raw, data, 0o644); err != nil {
		b.Fatal(err)
	}
	img := filepath.Join(dir, "bench.qcow2")
	args := []string{"convert", "-f", "raw", "-O", "qcow2", "-o", opts}
	if compress {
		args = append(args, "-c")
	}
	oracle.MustRun(b, append(args, raw, img)...)
	return img
}

// BenchmarkReadAt reads a whole image with GOMAXPROCS goroutines claiming
// 2 MiB chunks, as the converter does. Compare with
// `time qemu-img convert -O raw` of the same kind of image.
func BenchmarkReadAt(b *testing.B) {
	for _, bc := range []struct {
		name     string
		opts     string
		compress bool
	}{
		{"raw-64k", "cluster_size=64k", false},
		{"zlib-64k", "cluster_size=64k", true},
		{"zstd-64k", "cluster_size=64k,compression_type=zstd", true},
		{"zlib-2M", "cluster_size=2M", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			img := rdBenchImage(b, bc.opts, bc.compress)
			f, err := os.Open(img)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			im, err := Open(f, fileSize(b, f), disk.OpenOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer im.Close()
			const chunk = 2 << 20
			workers := runtime.GOMAXPROCS(0)
			b.SetBytes(im.Size())
			b.ResetTimer()
			for range b.N {
				var next atomic.Int64
				var wg sync.WaitGroup
				for range workers {
					wg.Go(func() {
						buf := make([]byte, chunk)
						for {
							off := next.Add(chunk) - chunk
							if off >= im.Size() {
								return
							}
							n := min(chunk, im.Size()-off)
							if _, err := im.ReadAt(buf[:n], off); err != nil {
								panic(fmt.Sprint(err))
							}
						}
					})
				}
				wg.Wait()
			}
		})
	}
}
