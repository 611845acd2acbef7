package convert

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
)

// memImage is a virtual disk in memory whose extents are given.
type memImage struct {
	data []byte
	exts []disk.Extent
	fail int64 // ReadAt at this offset fails; -1 never
}

func (m *memImage) ReadAt(p []byte, off int64) (int, error) {
	if m.fail >= 0 && off <= m.fail && m.fail < off+int64(len(p)) {
		return 0, errors.New("injected read failure")
	}
	return copy(p, m.data[off:]), nil
}
func (m *memImage) Size() int64  { return int64(len(m.data)) }
func (m *memImage) Close() error { return nil }
func (m *memImage) Extents(off, n int64) ([]disk.Extent, error) {
	var out []disk.Extent
	for _, e := range m.exts {
		s, t := max(e.Offset, off), min(e.End(), off+n)
		if s < t {
			out = append(out, disk.Extent{Offset: s, Length: t - s, Zero: e.Zero})
		}
	}
	return out, nil
}

// memWriter records writes and checks they come in ascending order.
type memWriter struct {
	mu      sync.Mutex
	data    []byte
	writes  int
	lastEnd int64
	ordered bool
}

func (w *memWriter) WriteAt(p []byte, off int64) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if off < w.lastEnd {
		w.ordered = false
	}
	w.lastEnd = off + int64(len(p))
	w.writes++
	return copy(w.data[off:], p), nil
}
func (w *memWriter) Resize(int64, bool) error { return nil }
func (w *memWriter) Close() error             { return nil }

func pattern(n int, seed uint64) ([]byte, []disk.Extent) {
	r := rand.New(rand.NewPCG(seed, seed))
	data := make([]byte, n)
	var exts []disk.Extent
	for off := 0; off < n; {
		l := min(n-off, 4096*(1+r.IntN(300)))
		switch r.IntN(3) {
		case 0: // hole
			exts = append(exts, disk.Extent{Offset: int64(off), Length: int64(l), Zero: true})
		case 1: // data that is partly zero
			for i := off; i < off+l; i += 4096 {
				if r.IntN(2) == 0 {
					for j := i; j < min(i+4096, off+l); j++ {
						data[j] = byte(r.Uint32())
					}
				}
			}
			exts = append(exts, disk.Extent{Offset: int64(off), Length: int64(l)})
		default:
			for j := off; j < off+l; j++ {
				data[j] = byte(r.Uint32())
			}
			exts = append(exts, disk.Extent{Offset: int64(off), Length: int64(l)})
		}
		off += l
	}
	return data, exts
}

func TestCopy(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		workers int
		chunk   int64
		zero    int64
		length  int64
	}{
		{"defaults", 20 << 20, 0, 0, 0, 0},
		{"one worker", 9<<20 + 123, 1, 0, 0, 0},
		{"small chunks", 7 << 20, 4, 64 << 10, 4096, 0},
		{"cluster zero blocks", 11 << 20, 2, 1 << 20, 64 << 10, 0},
		{"prefix only", 10 << 20, 2, 0, 0, 3<<20 + 512},
		{"odd tail", 3<<20 + 777, 3, 256 << 10, 4096, 0},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, exts := pattern(tc.size, uint64(i+1))
			src := &memImage{data: data, exts: exts, fail: -1}
			dst := &memWriter{data: make([]byte, tc.size), ordered: true}
			var last Progress
			st, err := Copy(context.Background(), dst, src, Options{
				Workers: tc.workers, ChunkSize: tc.chunk, ZeroBlock: tc.zero, Length: tc.length,
				Progress: func(p Progress) {
					if p.Done < last.Done {
						t.Errorf("progress went back from %d to %d", last.Done, p.Done)
					}
					last = p
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			want := data
			if tc.length > 0 {
				want = append(data[:tc.length:tc.length], make([]byte, tc.size-int(tc.length))...)
			}
			if !bytes.Equal(dst.data, want) {
				t.Fatal("copy differs from the source")
			}
			if !dst.ordered {
				t.Error("writes did not come in ascending order")
			}
			total := int64(tc.size)
			if tc.length > 0 {
				total = tc.length
			}
			if last.Done != total || last.Total != total {
				t.Errorf("final progress %+v, want %d", last, total)
			}
			if st.BytesWritten+st.ZeroSkipped != total {
				t.Errorf("stats %+v do not add up to %d", st, total)
			}
		})
	}
}

func TestCopyNeverWritesZeros(t *testing.T) {
	// A data extent full of zeros (e.g. a raw file whose zeros were
	// written out) must be detected and skipped.
	src := &memImage{data: make([]byte, 8<<20), exts: []disk.Extent{{Offset: 0, Length: 8 << 20}}, fail: -1}
	dst := &memWriter{data: make([]byte, 8<<20), ordered: true}
	st, err := Copy(context.Background(), dst, src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if dst.writes != 0 || st.ZeroSkipped != 8<<20 {
		t.Fatalf("writes=%d stats=%+v; want no writes", dst.writes, st)
	}
}

func TestCopyReadError(t *testing.T) {
	data, _ := pattern(16<<20, 9)
	src := &memImage{data: data, exts: []disk.Extent{{Offset: 0, Length: 16 << 20}}, fail: 5<<20 + 17}
	dst := &memWriter{data: make([]byte, 16<<20), ordered: true}
	_, err := Copy(context.Background(), dst, src, Options{Workers: 3, ChunkSize: 1 << 20})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("injected")) {
		t.Fatalf("err = %v, want the injected read failure", err)
	}
}

func TestCopyCancel(t *testing.T) {
	data, exts := pattern(32<<20, 3)
	src := &memImage{data: data, exts: exts, fail: -1}
	dst := &memWriter{data: make([]byte, 32<<20), ordered: true}
	ctx, cancel := context.WithCancel(context.Background())
	_, err := Copy(ctx, dst, src, Options{ChunkSize: 256 << 10, Progress: func(p Progress) {
		if p.Done > 4<<20 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestWriteNonZeroAlignment(t *testing.T) {
	// Zero blocks are aligned to virtual offsets, not to the buffer.
	buf := make([]byte, 8192)
	buf[10] = 1 // the first block (virtual 4096..8191) holds data
	dst := &memWriter{data: make([]byte, 16384), ordered: true}
	w, z, err := writeNonZero(dst, buf, 4096, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if w != 4096 || z != 4096 {
		t.Fatalf("written %d skipped %d", w, z)
	}
	if dst.data[4096+10] != 1 {
		t.Fatal("data not written at the right place")
	}
}

// describedImage is a memImage with a cluster size; it records its reads.
type describedImage struct {
	memImage
	cluster int64
	mu      sync.Mutex
	reads   []disk.Extent
}

func (m *describedImage) Info() disk.Info { return disk.Info{ClusterSize: m.cluster} }
func (m *describedImage) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	m.reads = append(m.reads, disk.Extent{Offset: off, Length: int64(len(p))})
	m.mu.Unlock()
	return m.memImage.ReadAt(p, off)
}

// Chunks hold whole source clusters, so that no compressed cluster is
// decompressed by two workers: 2 MiB clusters are read 2 MiB at a time,
// though the default chunk is smaller.
func TestChunksHoldWholeSourceClusters(t *testing.T) {
	const cluster = 2 << 20
	data := bytes.Repeat([]byte{1}, 4*cluster)
	src := &describedImage{memImage: memImage{data: data, fail: -1, exts: []disk.Extent{{Offset: 0, Length: int64(len(data))}}}, cluster: cluster}
	dst := &memWriter{data: make([]byte, len(data)), ordered: true}
	if _, err := Copy(context.Background(), dst, src, Options{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst.data, data) {
		t.Fatal("copy differs")
	}
	for _, r := range src.reads {
		if r.Offset%cluster != 0 || r.Length != cluster {
			t.Errorf("read of %d bytes at %d cuts a %d-byte cluster", r.Length, r.Offset, cluster)
		}
	}
	if DefaultChunkSize >= cluster {
		t.Fatalf("the test needs a default chunk (%d) below the cluster size", DefaultChunkSize)
	}
}

// Left to itself, Copy keeps its chunks in flight within maxInFlight
// however many cores there are; what the caller sets, it takes.
func TestPlanBoundsMemory(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	src := &memImage{data: make([]byte, 1<<20), fail: -1}
	for _, cores := range []int{1, 2, 8, 64, 256} {
		runtime.GOMAXPROCS(cores)
		for _, zb := range []int64{4096, 64 << 10, 2 << 20} {
			chunk, workers, depth := plan(src, Options{}, zb)
			if chunk%zb != 0 || chunk < DefaultChunkSize {
				t.Errorf("%d cores, zero block %d: chunk %d", cores, zb, chunk)
			}
			if workers < 1 || workers > maxWorkers || depth < workers {
				t.Errorf("%d cores: %d workers, depth %d", cores, workers, depth)
			}
			if inFlight := int64(depth) * chunk; inFlight > maxInFlight && depth > 2 {
				t.Errorf("%d cores, chunk %d: %d chunks in flight (%d bytes)", cores, chunk, depth, inFlight)
			}
			if cores <= 8 && zb < 2<<20 && (workers != cores || depth != 2*cores+2) {
				t.Errorf("%d cores: %d workers, depth %d; want %d and %d", cores, workers, depth, cores, 2*cores+2)
			}
		}
	}
	if _, w, d := plan(src, Options{Workers: 100, Depth: 300}, 4096); w != 100 || d != 300 {
		t.Errorf("asked for 100 workers and depth 300, got %d and %d", w, d)
	}
}
