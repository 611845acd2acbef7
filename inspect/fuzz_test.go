package inspect

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
	"github.com/ucphhpc/gen-vm-image-go/internal/testcorpus"
)

// Fuzz targets for the sniffers and the inspection policy, through every
// registered format's Inspect. Seeds: the corpus files of ../shared/corpus
// (when present), images qemu-img makes (when it is installed), and
// testdata/fuzz/*, where every crasher found is kept as a regression seed.

// maxSeed keeps large corpus files out of the flat-byte targets (they
// slow every mutation); FuzzInspectSparse carries them compactly instead.
const maxSeed = 256 << 10

// fuzzSeeds returns the images used as seeds, keyed by a name.
func fuzzSeeds(f *testing.F) map[string][]byte {
	seeds := map[string][]byte{}
	if dir, ok := testcorpus.Lookup(); ok {
		for name, b := range testcorpus.Files(dir, func(string) bool { return true }) {
			seeds["corpus/"+name] = b
		}
	}
	for name, b := range qemuSeeds() {
		seeds["qemu/"+name] = b
	}
	return seeds
}

// qemuSeeds makes small images of every kind qemu-img writes, safe and
// hostile, when qemu-img is installed; once for all targets.
var qemuSeeds = sync.OnceValue(func() map[string][]byte {
	seeds := oracle.MakeImages([]oracle.ImageSpec{
		{Name: "base.qcow2", Args: []string{"-f", "qcow2"}},
		{Name: "overlay.qcow2", Args: []string{"-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2"}},
		{Name: "datafile.qcow2", Args: []string{"-f", "qcow2", "-o", "data_file=data.raw"}},
		{Name: "extl2.qcow2", Args: []string{"-f", "qcow2", "-o", "extended_l2=on,compression_type=zstd"}},
		{Name: "sparse.vmdk", Args: []string{"-f", "vmdk"}},
		{Name: "stream.vmdk", Args: []string{"-f", "vmdk", "-o", "subformat=streamOptimized"}},
		{Name: "flat.vmdk", Args: []string{"-f", "vmdk", "-o", "subformat=monolithicFlat"}},
		{Name: "child.vmdk", Args: []string{"-f", "vmdk", "-b", "sparse.vmdk", "-F", "vmdk"}},
		{Name: "dynamic.vhd", Args: []string{"-f", "vpc"}},
		{Name: "fixed.vhd", Args: []string{"-f", "vpc", "-o", "subformat=fixed"}},
		{Name: "disk.vhdx", Args: []string{"-f", "vhdx"}},
		{Name: "disk.vdi", Args: []string{"-f", "vdi"}},
		{Name: "disk.qed", Args: []string{"-f", "qed", "-b", "base.qcow2", "-F", "qcow2"}},
		{Name: "disk.qcow", Args: []string{"-f", "qcow"}},
		{Name: "disk.parallels", Args: []string{"-f", "parallels"}},
	})
	if seeds == nil {
		return nil
	}
	// Encrypted images: qemu-img takes seconds to derive LUKS keys, so the
	// seeds are headers with the encryption fields set instead.
	if b := seeds["base.qcow2"]; b != nil {
		for method, name := range map[uint32]string{1: "aes.qcow2", 2: "luks.qcow2"} {
			e := slices.Clone(b)
			binary.BigEndian.PutUint32(e[32:], method)
			seeds[name] = e
		}
	}
	seeds["header.luks"] = append([]byte("LUKS\xba\xbe\x00\x02"), make([]byte, 4096)...)
	return seeds
})

func FuzzDetect(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		if len(b) <= maxSeed {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		names := disk.Sniff(r, int64(len(data)))
		name, err := disk.Detect(r, int64(len(data)))
		switch {
		case len(names) > 1:
			if !errors.Is(err, disk.ErrUnsafe) {
				t.Fatalf("polyglot %v detected as %q, %v", names, name, err)
			}
		case len(names) == 1:
			if err != nil || name != names[0] {
				t.Fatalf("sniffed %v, detected %q, %v", names, name, err)
			}
		default:
			if err != nil || name != "raw" {
				t.Fatalf("no magic, detected %q, %v; want raw", name, err)
			}
		}
	})
}

func FuzzInspect(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		if len(b) <= maxSeed {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &countingReader{r: bytes.NewReader(data)}
		checkInspect(t, r, int64(len(data)))
	})
}

// FuzzInspectSparse inspects a large, mostly empty file described compactly
// (see sparseFile), so that formats whose headers lie megabytes apart
// (VHDX, VHD footers at the end of big files) and files that claim to be
// huge are fuzzed too. Reads must stay bounded whatever the size.
func FuzzInspectSparse(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(encodeSparse(b))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sf := decodeSparse(data)
		r := &countingReader{r: sf}
		checkInspect(t, r, sf.size)
	})
}

// checkInspect runs InspectAt and checks what it may do: classified errors,
// consistent reports, bounded reads.
func checkInspect(t *testing.T, r *countingReader, size int64) {
	t.Helper()
	for _, declared := range []string{"", "qcow2"} {
		rep, err := InspectAt(r, size, declared, Policy{})
		if err != nil {
			if !classified(err) {
				t.Fatalf("error of no class: %v", err)
			}
			if err.Error() == "" {
				t.Fatal("empty message")
			}
			continue
		}
		if rep.Format == "" || (declared != "" && rep.Format != declared) {
			t.Fatalf("accepted as %q (declared %q)", rep.Format, declared)
		}
		if rep.VirtualSize < 0 || rep.VirtualSize > DefaultMaxVirtualSize {
			t.Fatalf("accepted a virtual size of %d", rep.VirtualSize)
		}
	}
	// Two inspections read at most: a qcow2 header cluster (2 MiB), a VMDK
	// descriptor (1 MiB), VHDX headers and tables (well under 1 MiB).
	if n := r.n.Load(); n > 8<<20 {
		t.Fatalf("inspection read %d bytes", n)
	}
}

func classified(err error) bool {
	for _, class := range []error{disk.ErrFormat, disk.ErrUnsupported, disk.ErrUnsafe, disk.ErrLimit, ErrMismatch, ErrPolyglot} {
		if errors.Is(err, class) {
			return true
		}
	}
	return false
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r interface {
		ReadAt([]byte, int64) (int, error)
	}
	n atomic.Int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	c.n.Add(int64(len(p)))
	return c.r.ReadAt(p, off)
}

// sparseFile is a file of size bytes, zeros except for its chunks. Its
// encoding: the size (8 bytes little-endian, taken modulo 2^42), then
// chunks of {sector u32 LE, length u16 LE, bytes}, each written at
// sector*512 (later chunks win).
type sparseFile struct {
	size   int64
	chunks []sparseChunk
}

type sparseChunk struct {
	off  int64
	data []byte
}

func (s *sparseFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.size {
		return 0, io.EOF
	}
	n := int64(len(p))
	if n > s.size-off {
		n = s.size - off
	}
	clear(p[:n])
	for _, c := range s.chunks {
		lo, hi := max(c.off, off), min(c.off+int64(len(c.data)), off+n)
		if lo < hi {
			copy(p[lo-off:hi-off], c.data[lo-c.off:hi-c.off])
		}
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

func decodeSparse(data []byte) *sparseFile {
	s := &sparseFile{}
	if len(data) < 8 {
		s.size = int64(len(data))
		s.chunks = []sparseChunk{{0, data}}
		return s
	}
	s.size = int64(binary.LittleEndian.Uint64(data) % (1 << 42))
	data = data[8:]
	for len(data) >= 6 {
		sector := int64(binary.LittleEndian.Uint32(data))
		n := int(binary.LittleEndian.Uint16(data[4:]))
		data = data[6:]
		n = min(n, len(data))
		s.chunks = append(s.chunks, sparseChunk{sector * 512, data[:n]})
		data = data[n:]
	}
	return s
}

// encodeSparse describes b as a sparseFile: its non-zero 512-byte sectors,
// runs of them merged up to 64 KiB - 512.
func encodeSparse(b []byte) []byte {
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(b)))
	zero := make([]byte, 512)
	for i := 0; i < len(b); {
		end := min(i+512, len(b))
		if bytes.Equal(b[i:end], zero[:end-i]) {
			i = end
			continue
		}
		j := end
		for j < len(b) && j-i < 0xffff-512 {
			e := min(j+512, len(b))
			if bytes.Equal(b[j:e], zero[:e-j]) {
				break
			}
			j = e
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(i/512))
		out = binary.LittleEndian.AppendUint16(out, uint16(j-i))
		out = append(out, b[i:j]...)
		i = j
	}
	return out
}
