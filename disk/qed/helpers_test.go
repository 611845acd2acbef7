package qed

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// openFile opens the QED image at path with our reader.
func openFile(t testing.TB, path string) disk.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	im, err := Open(f, st.Size(), disk.OpenOptions{})
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { im.Close() })
	return im
}

// checkFile runs our Check on the file at path.
func checkFile(t testing.TB, path string) (disk.CheckReport, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return Check(f, st.Size())
}

// assertCheckAgrees runs both checkers and fails unless they give the same
// figures (but for the leaks qemu's arithmetic invents, qemuPhantomLeaks);
// it returns qemu-img's report and exit code.
func assertCheckAgrees(t testing.TB, path string) (oracle.CheckReport, int) {
	t.Helper()
	ours, err := checkFile(t, path)
	if err != nil {
		t.Fatalf("Check(%s): %v", path, err)
	}
	q, code := oracle.Check(t, path, "qed")
	// qemu counts leaks only when it could read every table.
	phantom := int64(0)
	if ours.Errors == 0 {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		phantom = qemuPhantomLeaks(int64(len(b)), int64(binary.LittleEndian.Uint32(b[4:])))
	}
	got := [7]int64{int64(ours.Errors), int64(ours.Corruptions), int64(ours.Leaks) + phantom, ours.ImageEndOffset,
		ours.TotalClusters, ours.AllocatedClusters, ours.FragmentedClusters}
	want := [7]int64{int64(q.CheckErrors), int64(q.Corruptions), int64(q.Leaks), q.ImageEndOffset,
		q.TotalClusters, q.AllocatedClusters, q.FragmentedClusters}
	if got != want {
		t.Errorf("%s: [errors corruptions leaks end total allocated fragmented]\nours %v\nqemu %v\nproblems: %q",
			filepath.Base(path), got, want, ours.Problems)
	}
	return q, code
}

// assertReadsAsQemu reads the whole image with our reader and compares it
// with what qemu-img convert -O raw makes of it, and our extents with
// qemu-img map's idea of data and zeros.
func assertReadsAsQemu(t testing.TB, path string) {
	t.Helper()
	im := openFile(t, path)
	rawPath := filepath.Join(t.TempDir(), "qemu.raw")
	oracle.MustRun(t, "convert", "-f", "qed", "-O", "raw", path, rawPath)
	want, err := os.ReadFile(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(want)) != im.Size() {
		t.Fatalf("%s: size %d, qemu-img reads %d bytes", path, im.Size(), len(want))
	}
	got := make([]byte, len(want))
	if n, err := im.ReadAt(got, 0); n != len(got) || (err != nil && n != len(got)) {
		t.Fatalf("ReadAt: %d, %v", n, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: our reading differs from qemu-img's", path)
	}
	// Odd reads across cluster boundaries.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		if len(want) == 0 {
			break
		}
		off := rng.IntN(len(want))
		n := 1 + rng.IntN(min(len(want)-off, 300<<10))
		buf := make([]byte, n)
		if k, err := im.ReadAt(buf, int64(off)); k != n || (err != nil && off+n != len(want)) {
			t.Fatalf("ReadAt(%d, %d) = %d, %v", off, n, k, err)
		}
		if !bytes.Equal(buf, want[off:off+n]) {
			t.Fatalf("ReadAt(%d, %d) differs from qemu-img", off, n)
		}
	}
	assertMapAsQemu(t, path, im)
}

// assertMapAsQemu compares our extents with qemu-img map: data where qemu
// says data, zeros where it says zero.
func assertMapAsQemu(t testing.TB, path string, im disk.Image) {
	t.Helper()
	out := oracle.MustRun(t, "map", "--output=json", "-f", "qed", path)
	var entries []struct {
		Start, Length int64
		Data, Zero    bool
	}
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatal(err)
	}
	ext, err := im.Extents(0, im.Size())
	if err != nil {
		t.Fatal(err)
	}
	kind := func(off int64) string {
		for _, e := range ext {
			if off >= e.Offset && off < e.End() {
				return fmt.Sprint(!e.Zero)
			}
		}
		return "none"
	}
	for _, e := range entries {
		for _, off := range []int64{e.Start, e.Start + e.Length - 1} {
			if got := kind(off); got != fmt.Sprint(e.Data) {
				t.Errorf("%s at %d: our extent says data=%s, qemu-img map %+v", path, off, got, e)
			}
		}
	}
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// qemuPhantomLeaks is how many more leaks qemu-img check reports than
// there are on a QED file of fileSize bytes: block/qed.h
// qed_bytes_to_clusters divides by cluster_size-1 instead of cluster_size,
// so qemu's bitmap has one index per cluster_size-1 clusters that nothing
// marks (one leak per 16 MiB of 4 KiB clusters, per 4 GiB of 64 KiB ones),
// on images qemu wrote as on ours; Check reports the true figure.
func qemuPhantomLeaks(fileSize, clusterSize int64) int64 {
	fileSize &^= clusterSize - 1
	return fileSize/(clusterSize-1) - fileSize/clusterSize
}
