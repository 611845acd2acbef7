package qcow2

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
	"github.com/ucphhpc/gen-vm-image-go/internal/testcorpus"
)

// chkRun runs our Check on the file at path.
func chkRun(t testing.TB, path string) (disk.CheckReport, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return Check(f, fileSize(t, f))
}

// chkQemu runs qemu-img check --output=json; with nullBacking the backing
// file (which may be absent) is not opened.
func chkQemu(t testing.TB, path string, nullBacking bool) (oracle.CheckReport, int) {
	t.Helper()
	if !nullBacking {
		return oracle.Check(t, path, "qcow2")
	}
	spec, err := json.Marshal(map[string]any{
		"driver":  "qcow2",
		"backing": nil,
		"file":    map[string]any{"driver": "file", "filename": path},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := oracle.Run(t, "check", "--output=json", "json:"+string(spec))
	var r oracle.CheckReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("qemu-img check %s: exit %d: %v\n%s%s", path, code, err, out, errOut)
	}
	return r, code
}

// chkAgree compares our report with qemu-img's, field by field.
func chkAgree(t testing.TB, path string, ours disk.CheckReport, q oracle.CheckReport) {
	t.Helper()
	got := [8]int64{int64(ours.Errors), int64(ours.Corruptions), int64(ours.Leaks), ours.ImageEndOffset,
		ours.TotalClusters, ours.AllocatedClusters, ours.FragmentedClusters, ours.CompressedClusters}
	want := [8]int64{int64(q.CheckErrors), int64(q.Corruptions), int64(q.Leaks), q.ImageEndOffset,
		q.TotalClusters, q.AllocatedClusters, q.FragmentedClusters, q.CompressedClusters}
	if got != want {
		t.Errorf("%s: [errors corruptions leaks end total allocated fragmented compressed]\nours %v\nqemu %v\nproblems: %q",
			filepath.Base(path), got, want, ours.Problems)
	}
}

// chkAssertAgree checks the image with both checkers and fails unless they
// agree; it returns qemu-img's report.
func chkAssertAgree(t testing.TB, path string) oracle.CheckReport {
	t.Helper()
	ours, err := chkRun(t, path)
	if err != nil {
		t.Fatalf("Check(%s): %v", path, err)
	}
	q, _ := chkQemu(t, path, false)
	chkAgree(t, path, ours, q)
	return q
}

// chkPatternRaw writes a raw disk of the given size with random data in
// scattered runs (some cluster-aligned, some not) and zeros elsewhere.
func chkPatternRaw(t testing.TB, path string, size int64, seed uint64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	for range 24 {
		n := 1 + rng.Int64N(300<<10)
		off := rng.Int64N(size - n)
		if _, err := f.WriteAt(wrRandom(rng, int(n)), off); err != nil {
			t.Fatal(err)
		}
	}
	// Compressible text too, so that -c images mix sizes.
	text := []byte(strings.Repeat("qcow2 check oracle ", 20000))
	if _, err := f.WriteAt(text, size/2); err != nil {
		t.Fatal(err)
	}
}

func TestCheckQemuImages(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	chkPatternRaw(t, src, 12<<20, 1)
	src2 := filepath.Join(dir, "src2.raw")
	chkPatternRaw(t, src2, 12<<20, 2)

	type variant struct {
		name     string
		opts     string
		compress bool
		after    func(t *testing.T, path string)
	}
	snapshot := func(t *testing.T, path string) {
		oracle.MustRun(t, "snapshot", "-c", "s1", path)
		oracle.MustRun(t, "convert", "-n", "-O", "qcow2", src2, path) // copy-on-write over the snapshot
		oracle.MustRun(t, "snapshot", "-c", "s2", path)
	}
	bitmap := func(t *testing.T, path string) {
		oracle.MustRun(t, "bitmap", "--add", "--enable", path, "b0")
		oracle.MustRun(t, "bitmap", "--add", "-g", "4096", path, "b1")
		oracle.MustRun(t, "convert", "-n", "-O", "qcow2", src2, path) // dirties b0
	}
	var variants []variant
	for _, compat := range []string{"0.10", "1.1"} {
		for _, cs := range []string{"512", "4k", "64k", "2M"} {
			variants = append(variants,
				variant{name: "compat" + compat + "-" + cs, opts: "compat=" + compat + ",cluster_size=" + cs},
				variant{name: "compat" + compat + "-" + cs + "-zlib", opts: "compat=" + compat + ",cluster_size=" + cs, compress: true})
		}
	}
	variants = append(variants,
		variant{name: "zstd-64k", opts: "compression_type=zstd", compress: true},
		variant{name: "zstd-4k", opts: "compression_type=zstd,cluster_size=4k", compress: true},
		variant{name: "extended-l2-64k", opts: "extended_l2=on"},
		variant{name: "extended-l2-32k-zlib", opts: "extended_l2=on,cluster_size=32k", compress: true},
		variant{name: "prealloc-metadata-v3", opts: "preallocation=metadata"},
		variant{name: "prealloc-metadata-v2", opts: "compat=0.10,preallocation=metadata"},
		variant{name: "snapshots-v3", opts: "", after: snapshot},
		variant{name: "snapshots-v2-4k", opts: "compat=0.10,cluster_size=4k", after: snapshot},
		variant{name: "snapshots-zlib", opts: "", compress: true, after: snapshot},
		variant{name: "bitmaps", opts: "", after: bitmap},
		variant{name: "external-data-file", opts: "data_file=" + filepath.Join(dir, "external.data")},
	)
	for _, bits := range []string{"1", "2", "4", "8", "32", "64"} {
		variants = append(variants, variant{name: "refcount-bits-" + bits, opts: "refcount_bits=" + bits})
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "img.qcow2")
			args := []string{"convert", "-O", "qcow2"}
			if v.opts != "" {
				args = append(args, "-o", v.opts)
			}
			if v.compress {
				args = append(args, "-c")
			}
			oracle.MustRun(t, append(args, src, path)...)
			if v.after != nil {
				v.after(t, path)
			}
			q := chkAssertAgree(t, path)
			if q.CheckErrors != 0 || q.Corruptions != 0 || q.Leaks != 0 {
				t.Errorf("qemu-img finds the image unclean: %+v", q)
			}
		})
	}
}

func TestCheckOurImages(t *testing.T) {
	oracle.QemuImg(t)
	rng := rand.New(rand.NewPCG(9, 9))
	ti := wrNewTestImage(t, 3<<30, 0)
	for range 40 {
		n := rng.Int64N(1 << 20)
		ti.write(wrRandom(rng, int(n)), rng.Int64N(ti.size-n))
	}
	ti.resize(2<<30, true)
	ti.verify() // compares our Check with qemu-img's
}

// chkQemuErrors finds qemu-img check's count in a corpus manifest note.
var chkQemuErrors = regexp.MustCompile(`check rc=2: (\d+) errors were found`)

func TestCheckCorpus(t *testing.T) {
	oracle.QemuImg(t)
	dir := testcorpus.Dir(t)
	n := 0
	for _, e := range testcorpus.Manifest(t) {
		if e.NotKept || e.QemuFormat != "qcow2" {
			continue
		}
		path := filepath.Join(dir, e.File)
		t.Run(e.File, func(t *testing.T) {
			ours, err := chkRun(t, path)
			nullBacking := strings.Contains(e.Notes, "backing=null")
			clean := strings.Contains(e.Notes, "rc=0")
			if !clean {
				// Malformed: either refused at the header or reported,
				// never a panic, and never a clean report; where qemu-img
				// manages a report, the figures agree.
				if err == nil && ours.OK() {
					t.Errorf("malformed image reported clean: %+v", ours)
				}
				if err != nil {
					t.Logf("refused: %v", err)
					return
				}
				// The manifest records what qemu-img check found (running
				// it again takes seconds on the 65536-snapshot file).
				if m := chkQemuErrors.FindStringSubmatch(e.Notes); m != nil && fmt.Sprint(ours.Corruptions) != m[1] {
					t.Errorf("%d corruptions, qemu-img found %s errors", ours.Corruptions, m[1])
				}
				return
			}
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			q, code := chkQemu(t, path, nullBacking)
			if code != 0 {
				t.Fatalf("qemu-img check exit %d", code)
			}
			chkAgree(t, path, ours, q)
			n++
		})
	}
	t.Logf("%d clean corpus images agree with qemu-img", n)
}

// chkLayout finds the metadata of a freshly converted image: the first
// refcount block, the first L2 table and its first allocated data entry.
type chkLayout struct {
	h        *Header
	size     int64
	refblock int64
	l1       int64
	l2       int64 // host offset of the first L2 table
	l2Index  int64 // index of the first allocated entry in it
	data     int64 // its data cluster
}

func chkReadLayout(t *testing.T, path string) chkLayout {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHeader(b, int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	be := binary.BigEndian
	l := chkLayout{h: h, size: int64(len(b)), l1: int64(h.L1TableOffset)}
	l.refblock = int64(be.Uint64(b[h.RefcountTableOffset:]))
	for i := uint32(0); i < h.L1Size && l.l2 == 0; i++ {
		l.l2 = int64(be.Uint64(b[l.l1+int64(i)*8:]) & L1OffsetMask)
	}
	for i := int64(0); i < h.ClusterSize()/8; i++ {
		if e := be.Uint64(b[l.l2+i*8:]); e&L2OffsetMask != 0 {
			l.l2Index, l.data = i, int64(e&L2OffsetMask)
			break
		}
	}
	if l.l2 == 0 || l.data == 0 {
		t.Fatal("no allocated cluster in the test image")
	}
	return l
}

func chkPatch(t *testing.T, path string, off int64, p []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(p, off); err != nil {
		t.Fatal(err)
	}
}

func chkU16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func chkU64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func TestCheckCorrupted(t *testing.T) {
	oracle.QemuImg(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	chkPatternRaw(t, src, 8<<20, 3)
	type corruption struct {
		name string
		// want: which counts must be non-zero in both reports
		wantCorrupt, wantLeak bool
		do                    func(t *testing.T, path string, l chkLayout)
	}
	refcountAt := func(l chkLayout, host int64) int64 {
		return l.refblock + host/l.h.ClusterSize()*2
	}
	l2Entry := func(l chkLayout) int64 { return l.l2 + l.l2Index*8 }
	cases := []corruption{
		{"refcount bumped (leak)", true, true, func(t *testing.T, p string, l chkLayout) {
			chkPatch(t, p, refcountAt(l, l.data), chkU16(2))
		}},
		{"refcount zeroed", true, false, func(t *testing.T, p string, l chkLayout) {
			chkPatch(t, p, refcountAt(l, l.data), chkU16(0))
		}},
		{"L2 table refcount zeroed", true, false, func(t *testing.T, p string, l chkLayout) {
			chkPatch(t, p, refcountAt(l, l.l2), chkU16(0))
		}},
		{"COPIED dropped", true, false, func(t *testing.T, p string, l chkLayout) {
			chkPatch(t, p, l2Entry(l), chkU64(uint64(l.data)))
		}},
		{"L2 entry past EOF", true, true, func(t *testing.T, p string, l chkLayout) {
			chkPatch(t, p, l2Entry(l), chkU64(uint64(l.size+10*l.h.ClusterSize())|EntryCopied))
		}},
		{"L2 entry unaligned", true, false, func(t *testing.T, p string, l chkLayout) {
			chkPatch(t, p, l2Entry(l), chkU64(uint64(l.data+512)|EntryCopied))
		}},
		{"L2 entry doubled", true, true, func(t *testing.T, p string, l chkLayout) {
			chkPatch(t, p, l2Entry(l)+8*3, chkU64(uint64(l.data)|EntryCopied))
		}},
		{"L1 reserved bits", true, false, func(t *testing.T, p string, l chkLayout) {
			chkPatch(t, p, l.l1, chkU64(uint64(l.l2)|EntryCopied|2))
		}},
		{"refcount table entry unaligned", true, false, func(t *testing.T, p string, l chkLayout) {
			chkPatch(t, p, int64(l.h.RefcountTableOffset), chkU64(uint64(l.refblock+4096)))
		}},
		{"truncated", true, false, func(t *testing.T, p string, l chkLayout) {
			if err := os.Truncate(p, l.size-3*l.h.ClusterSize()); err != nil {
				t.Fatal(err)
			}
		}},
		{"extra cluster at the end", false, true, func(t *testing.T, p string, l chkLayout) {
			// A cluster with refcount 1 that nothing references.
			end := (l.size + l.h.ClusterSize() - 1) / l.h.ClusterSize()
			chkPatch(t, p, refcountAt(l, end*l.h.ClusterSize()), chkU16(1))
			chkPatch(t, p, end*l.h.ClusterSize(), make([]byte, l.h.ClusterSize()))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "img.qcow2")
			oracle.MustRun(t, "convert", "-O", "qcow2", src, path)
			c.do(t, path, chkReadLayout(t, path))
			ours, err := chkRun(t, path)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			q, _ := chkQemu(t, path, false)
			chkAgree(t, path, ours, q)
			if (ours.Corruptions > 0) != c.wantCorrupt || (ours.Leaks > 0) != c.wantLeak {
				t.Errorf("corruptions %d, leaks %d; want corruptions: %v, leaks: %v", ours.Corruptions, ours.Leaks, c.wantCorrupt, c.wantLeak)
			}
			if len(ours.Problems) == 0 {
				t.Error("no problem described")
			}
		})
	}
}

func TestCheckRefusesBadHeaders(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string][]byte{
		"empty":     nil,
		"garbage":   []byte(strings.Repeat("x", 4096)),
		"bad magic": append([]byte("QFI\xfa\x00\x00\x00\x03"), make([]byte, 200)...),
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		if err := os.WriteFile(path, content, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := chkRun(t, path); !errors.Is(err, disk.ErrFormat) {
			t.Errorf("%s: %v, want ErrFormat", name, err)
		}
	}
}

// TestCheckProblemsCapped: thousands of findings give a bounded list.
func TestCheckProblemsCapped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "img.qcow2")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := Create(f, 64<<20, clusterOpt(4096))
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 32<<20)
	for i := range data {
		data[i] = 1
	}
	if _, err := w.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// Zero the refcount block: every cluster it covers is now corrupt.
	if _, err := f.WriteAt(make([]byte, 4096), 2*4096); err != nil {
		t.Fatal(err)
	}
	r, err := Check(f, fileSize(t, f))
	if err != nil {
		t.Fatal(err)
	}
	if r.Corruptions < 1000 || len(r.Problems) != chkMaxProblems+1 || !strings.HasPrefix(r.Problems[chkMaxProblems], "... and ") {
		t.Errorf("corruptions %d, %d problems listed (last %q)", r.Corruptions, len(r.Problems), r.Problems[len(r.Problems)-1])
	}
}

// FuzzCheck: whatever the bytes, Check returns an error or a report and
// never panics or allocates without bound.
func FuzzCheck(f *testing.F) {
	seed := func(size, cs int64, writes int) []byte {
		path := filepath.Join(f.TempDir(), fmt.Sprint("seed", size, cs, writes))
		file, err := os.Create(path)
		if err != nil {
			f.Fatal(err)
		}
		defer file.Close()
		w, err := Create(file, size, clusterOpt(cs))
		if err != nil {
			f.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		for range writes {
			n := rng.Int64N(3 * cs)
			if _, err := w.WriteAt(wrRandom(rng, int(n)), rng.Int64N(size-n)); err != nil {
				f.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			f.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add(seed(256<<10, 512, 8))
	f.Add(seed(1<<20, 4096, 4))
	f.Add(cmpSeed(f, "zlib"))
	f.Add(cmpSeed(f, "zstd"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4<<20 {
			return
		}
		path := filepath.Join(t.TempDir(), "fuzz.qcow2")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := chkRun(t, path)
		if err == nil && len(r.Problems) > chkMaxProblems+1 {
			t.Fatalf("%d problems listed", len(r.Problems))
		}
	})
}

// TestCheckBudget: an L1 table whose 32768 entries all point at one L2
// table would have the check walk 268M entries of a 1 MiB file; it stops
// early instead and says so.
func TestCheckBudget(t *testing.T) {
	path := filepath.Join(t.TempDir(), "img.qcow2")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := Create(f, 16<<40, disk.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off < 8<<16; off += 1 << 16 {
		if _, err := w.WriteAt([]byte{1}, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	l := chkReadLayout(t, path)
	entry := chkU64(uint64(l.l2) | EntryCopied)
	for i := int64(0); i < int64(l.h.L1Size); i++ {
		chkPatch(t, path, l.l1+i*8, entry)
	}
	r, err := chkRun(t, path)
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 1 || r.OK() || !strings.Contains(r.Problems[len(r.Problems)-1], "abandoned") {
		t.Errorf("errors %d, problems %q", r.Errors, r.Problems)
	}
}
