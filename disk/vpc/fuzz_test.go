package vpc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
	"github.com/ucphhpc/gen-vm-image-go/internal/testcorpus"
)

// FuzzOpen opens arbitrary bytes as a VHD and, when that succeeds, walks
// its extents, reads them and checks the image. Nothing may panic, hang or
// allocate without bound, and every error must belong to one of disk's
// classes.
//
// Seeds: testdata/fuzz/FuzzOpen, hand-made fixed and dynamic disks (with
// 4 KiB blocks), tiny qemu-img images and the small VHD files of
// ../shared/corpus when it is present.
func FuzzOpen(f *testing.F) {
	f.Add(seedSmallBlocks())
	f.Add(seedFixed())
	for name, b := range oracle.MakeImages([]oracle.ImageSpec{
		{Name: "dynamic.vhd", Args: []string{"-f", "vpc"}},
		{Name: "qem2.vhd", Args: []string{"-f", "vpc", "-o", "force_size=on"}},
	}) {
		if strings.HasSuffix(name, ".vhd") {
			f.Add(b)
		}
	}
	// Small inputs only: the fuzzer slows to a crawl on large ones (the
	// large corpus files are read in full by TestReaderCorpus).
	if dir, ok := testcorpus.Lookup(); ok {
		for _, b := range testcorpus.Files(dir, func(name string) bool {
			return strings.HasSuffix(name, ".vhd") || name == "afl5.img"
		}) {
			if len(b) <= 64<<10 {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		size := int64(len(data))
		if facts, err := Inspect(r, size, disk.Limits{}); err != nil {
			classified(t, "Inspect", err)
		} else if facts.Info.Format != "vpc" {
			t.Fatalf("Inspect accepted an image it did not describe: %+v", facts)
		}
		if _, err := Check(r, size); err != nil {
			classified(t, "Check", err)
		}
		im, err := Open(r, size, disk.OpenOptions{})
		if err != nil {
			classified(t, "Open", err)
			return
		}
		defer im.Close()
		_ = im.(disk.Describer).Info()
		walk(t, im)
	})
}

func classified(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, disk.ErrFormat) && !errors.Is(err, disk.ErrUnsupported) && !errors.Is(err, disk.ErrUnsafe) && !errors.Is(err, disk.ErrLimit) {
		t.Fatalf("%s: error of no class: %v", what, err)
	}
}

// walk checks the extents of the start and the end of the disk (a
// hostile image may claim 2 TiB) and reads a bounded part of each.
func walk(t *testing.T, im disk.Image) {
	const window = 4 << 20
	size := im.Size()
	starts := []int64{0}
	if size > window {
		starts = append(starts, size-window)
	}
	buf := make([]byte, 64<<10)
	for _, w := range starts {
		n := min(window, size-w)
		ext, err := im.Extents(w, n)
		if err != nil {
			classified(t, "Extents", err)
			continue
		}
		pos := w
		for _, e := range ext {
			if e.Offset != pos || e.Length <= 0 {
				t.Fatalf("Extents(%#x, %#x): extent %+v does not continue at %#x", w, n, e, pos)
			}
			pos = e.End()
			for _, o := range []int64{e.Offset, max(e.Offset, e.End()-int64(len(buf)))} {
				m := min(int64(len(buf)), e.End()-o)
				got, err := im.ReadAt(buf[:m], o)
				if err != nil && !(err == io.EOF && o+m == size) {
					classified(t, "ReadAt", err)
					break
				}
				if int64(got) != m {
					t.Fatalf("ReadAt(%#x, %d) = %d", o, m, got)
				}
				if e.Zero && !bytes.Equal(buf[:m], make([]byte, m)) {
					t.Fatalf("Zero extent %+v reads non-zero bytes", e)
				}
			}
		}
		if pos != w+n {
			t.Fatalf("Extents(%#x, %#x) end at %#x", w, n, pos)
		}
	}
}

// seedSmallBlocks builds a dynamic disk of 32 KiB with 4 KiB blocks (the
// smallest with a bitmap sector in qemu's reckoning): blocks 0 and 5
// allocated, in reverse order, the others not.
func seedSmallBlocks() []byte {
	const bs = 4096
	be := binary.BigEndian
	footer := footerSpec{diskType: diskDynamic, size: 8 * bs, geometry: geometry{1, 4, 16}, creatorApp: "win "}.encode()
	img := append([]byte{}, footer...)
	img = append(img, encodeDynHeader(1536, 8, bs)...)
	table := bytes.Repeat([]byte{0xff}, 512)
	block := func(fill byte) []byte {
		return append(bytes.Repeat([]byte{0xff}, 512), bytes.Repeat([]byte{fill}, bs)...)
	}
	be.PutUint32(table[0:], (2048+512+bs)/512)
	be.PutUint32(table[20:], 2048/512)
	img = append(img, table...)
	img = append(img, block(5)...)
	img = append(img, block(1)...)
	return append(img, footer...)
}

// seedFixed is a fixed disk of 8 sectors with some data.
func seedFixed() []byte {
	data := bytes.Repeat([]byte("fixed VHD seed. "), 4096/16)
	footer := footerSpec{diskType: diskFixed, size: 4096, geometry: geometry{1, 4, 2}, creatorApp: "qemu"}.encode()
	return append(data, footer...)
}

// TestSmallBlocks: the hand-made seed reads as it was made and checks
// clean, and testdata/fuzz holds it.
func TestSmallBlocks(t *testing.T) {
	b := seedSmallBlocks()
	im, err := Open(bytes.NewReader(b), int64(len(b)), disk.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, im)
	want := make([]byte, 8*4096)
	copy(want[0:4096], bytes.Repeat([]byte{1}, 4096))
	copy(want[5*4096:6*4096], bytes.Repeat([]byte{5}, 4096))
	if !bytes.Equal(got, want) {
		t.Fatal("the hand-made disk reads wrong")
	}
	checkExtents(t, im, got)
	rep, err := Check(bytes.NewReader(b), int64(len(b)))
	if err != nil || !rep.OK() || rep.AllocatedClusters != 2 || rep.FragmentedClusters != 1 {
		t.Fatalf("Check: %+v, %v", rep, err)
	}
	// The seed in testdata/fuzz is this image.
	seed, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzOpen", "small-blocks"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"; string(seed) != want {
		t.Fatal("testdata/fuzz/FuzzOpen/small-blocks is not the hand-made image")
	}
}

// TestMutations runs FuzzOpen's checks on a few thousand deterministic
// mutations of the hand-made seeds, with the checksums fixed up half of
// the time so that the mutations reach past them: a fuzz run in every
// `go test`, for machines where the fuzzing engine cannot run.
func TestMutations(t *testing.T) {
	seeds := [][]byte{seedSmallBlocks(), seedFixed()}
	rng := rand.New(rand.NewPCG(11, 12))
	be := binary.BigEndian
	for i := range 3000 {
		b := bytes.Clone(seeds[i%len(seeds)])
		for range 1 + rng.IntN(4) {
			p := rng.IntN(min(len(b), 2048))
			if rng.IntN(2) == 0 {
				p = len(b) - 1 - rng.IntN(footerSize)
			}
			b[p] = byte(rng.Uint32())
		}
		if rng.IntN(2) == 0 {
			if bytes.HasPrefix(b, []byte("conectix")) {
				be.PutUint32(b[offChecksum:], Checksum(b[:footerSize], offChecksum))
				be.PutUint32(b[footerSize+offDynChecksum:], Checksum(b[footerSize:footerSize+dynHeaderSize], offDynChecksum))
			}
			end := b[len(b)-footerSize:]
			be.PutUint32(end[offChecksum:], Checksum(end, offChecksum))
		}
		r := bytes.NewReader(b)
		if _, err := Inspect(r, int64(len(b)), disk.Limits{}); err != nil {
			classified(t, "Inspect", err)
		}
		if _, err := Check(r, int64(len(b))); err != nil {
			classified(t, "Check", err)
		}
		im, err := Open(r, int64(len(b)), disk.OpenOptions{})
		if err != nil {
			classified(t, "Open", err)
			continue
		}
		walk(t, im)
	}
}
