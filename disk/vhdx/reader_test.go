package vhdx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/internal/blockio"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// TestReadQemuMade: what qemu-img writes, dynamic and fixed, every block
// size class, odd sizes, we read identically, with qemu-img check's
// verdict.
func TestReadQemuMade(t *testing.T) {
	oracle.QemuImg(t)
	for _, tc := range []struct {
		name string
		size int64
		opts string
	}{
		{"1B", 1, ""},
		{"odd-dynamic-1M", 9<<20 + 4608, "block_size=1M"},
		{"odd-fixed-2M", 5<<20 + 512, "subformat=fixed,block_size=2M"},
		{"log-2M-zero-off", 20 << 20, "log_size=2M,block_state_zero=off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			pieces := []piece{{0, min(tc.size, 4096), false}}
			if tc.size > 8<<20 {
				pieces = append(pieces, piece{3 << 20, 1<<20 + 512, false}, piece{tc.size - 512, 512, false})
			}
			raw := filepath.Join(dir, "in.raw")
			f, err := os.Create(raw)
			if err != nil {
				t.Fatal(err)
			}
			f.Truncate((tc.size + 511) &^ 511)
			for _, p := range pieces {
				f.WriteAt(pattern(p.off, p.n), p.off)
			}
			f.Close()
			path := filepath.Join(dir, "q.vhdx")
			args := []string{"convert", "-f", "raw", "-O", "vhdx"}
			if tc.opts != "" {
				args = append(args, "-o", tc.opts)
			}
			oracle.MustRun(t, append(args, raw, path)...)
			assertReadsAsRaw(t, path, raw, pieces)
			ourCheck(t, path)
			info := oracle.ImageInfo(t, path)
			if ours := ourInfo(t, path); ours.ClusterSize != info.ClusterSize || ours.VirtualSize != info.VirtualSize {
				t.Errorf("our info %+v, qemu-img's %+v", ours, info)
			}
		})
	}
}

// qemuImage makes a small dynamic VHDX with qemu-img holding data in its
// first block and returns its bytes.
func qemuImage(t *testing.T, opts string) []byte {
	t.Helper()
	oracle.QemuImg(t)
	dir := t.TempDir()
	raw := filepath.Join(dir, "in.raw")
	if err := os.WriteFile(raw, bytes.Repeat([]byte("vhdx"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "q.vhdx")
	oracle.MustRun(t, "convert", "-f", "raw", "-O", "vhdx", "-o", opts, raw, path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fixCRC(b []byte, at int) {
	binary.LittleEndian.PutUint32(b[at:], 0)
	binary.LittleEndian.PutUint32(b[at:], crc32.Checksum(b, castagnoli))
}

// batEntryOffset finds the BAT region of an image and returns the file
// offset of payload entry 0.
func batEntryOffset(t *testing.T, b []byte) int {
	t.Helper()
	rt := b[regionTable1 : regionTable1+regionTableSize]
	for i := range int(binary.LittleEndian.Uint32(rt[8:])) {
		e := rt[16+32*i:]
		if [16]byte(e[:16]) == regionBAT {
			return int(binary.LittleEndian.Uint64(e[16:]))
		}
	}
	t.Fatal("no BAT region")
	return 0
}

// TestMalformed: broken images fail cleanly with an error of the right
// class, at Open and at Check.
func TestMalformed(t *testing.T) {
	base := qemuImage(t, "block_size=1M")
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(base)) }
	tests := []struct {
		name  string
		image []byte
		class error
		msg   string
		check bool // Check still runs and reports a corruption
	}{
		{"truncated to the headers", base[:200<<10], disk.ErrFormat, "region table", false},
		{"both headers broken", edit(func(b []byte) []byte {
			b[header1+100]++
			b[header2+100]++
			return b
		}), disk.ErrFormat, "neither header", false},
		{"block beyond the end", edit(func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[batEntryOffset(t, b):], uint64(1<<30)|stateFullyPresent)
			return b
		}), disk.ErrFormat, "beyond the end of the file", true},
		{"block over the metadata", edit(func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[batEntryOffset(t, b):], uint64(2<<20)|stateFullyPresent)
			return b
		}), disk.ErrFormat, "overlaps the image's structures", true},
		{"unknown block state", edit(func(b []byte) []byte {
			b[batEntryOffset(t, b)] = 4
			return b
		}), disk.ErrFormat, "state 4", true},
		{"partially present without a bitmap", edit(func(b []byte) []byte {
			b[batEntryOffset(t, b)] |= statePartlyPresent
			return b
		}), disk.ErrFormat, "sector bitmap", true},
		{"pending log entry with a bad descriptor", edit(func(b []byte) []byte {
			return withLog(b, func(entry []byte) { copy(entry[64:], "junk") })
		}), disk.ErrFormat, "descriptor 0", false},
		{"pending log beyond the file", edit(func(b []byte) []byte {
			return withLog(b, func(entry []byte) { binary.LittleEndian.PutUint64(entry[48:], 1<<40) })
		}), disk.ErrFormat, "truncated", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bytes.NewReader(tt.image)
			_, err := Open(r, int64(len(tt.image)), disk.OpenOptions{})
			if !errors.Is(err, tt.class) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Open: %v; want %v saying %q", err, tt.class, tt.msg)
			}
			report, err := Check(r, int64(len(tt.image)))
			if tt.check {
				if err != nil || report.Corruptions == 0 || !strings.Contains(strings.Join(report.Problems, "\n"), tt.msg) {
					t.Fatalf("Check: %+v, %v", report, err)
				}
			} else if err == nil {
				t.Fatalf("Check: %+v, want an error", report)
			}
		})
	}
}

// withLog gives an image a pending log of one entry that writes one 4 KiB
// sector of "LOG!" at 0 (the file identifier's first sector), editing the
// entry with edit before its checksum is computed.
func withLog(b []byte, edit func(entry []byte)) []byte {
	le := binary.LittleEndian
	const seq = 7
	guid := bytes.Repeat([]byte{0xab}, 16)
	for _, off := range []int{header1, header2} {
		h := b[off : off+headerSize]
		copy(h[48:64], guid)
		fixCRC(h, 4)
	}
	logOff := int(le.Uint64(b[header1+72:]))
	entry := make([]byte, 2*logSector)
	copy(entry, "loge")
	le.PutUint32(entry[8:], uint32(len(entry)))
	le.PutUint64(entry[16:], seq)
	le.PutUint32(entry[24:], 1)
	copy(entry[32:], guid)
	le.PutUint64(entry[48:], uint64(len(b))) // flushed file offset
	le.PutUint64(entry[56:], uint64(len(b))) // last file offset
	d := entry[64:]
	copy(d, "desc")
	copy(d[4:8], "!END")     // trailing bytes
	copy(d[8:16], "LEADING") // leading bytes
	le.PutUint64(d[16:], 0)  // file offset
	le.PutUint64(d[24:], seq)
	s := entry[logSector:]
	copy(s, "data")
	le.PutUint32(s[4:], 0)
	copy(s[8:4092], bytes.Repeat([]byte("LOG!"), logDataBytes/4))
	le.PutUint32(s[4092:], seq)
	edit(entry)
	fixCRC(entry, 4)
	copy(b[logOff:], entry)
	return b
}

// TestLogReplayInMemory: a pending log that rewrites the first sector is
// applied to what we read, not to the file; qemu-img, replaying a copy,
// agrees.
func TestLogReplayInMemory(t *testing.T) {
	b := withLog(qemuImage(t, "block_size=1M"), func([]byte) {})
	orig := bytes.Clone(b)
	src, n, err := replayLog(blockio.Source{R: bytes.NewReader(b), Size: int64(len(b))}, b[header1:header1+headerSize], disk.Limits{}.WithDefaults())
	if err != nil || n != 1 {
		t.Fatalf("replayLog: %d entries, %v", n, err)
	}
	got := make([]byte, logSector)
	if _, err := src.R.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte("LEADING\x00"), bytes.Repeat([]byte("LOG!"), logDataBytes/4)...), "!END"...)
	if !bytes.Equal(got, want) {
		t.Fatalf("sector 0 reads %q...", got[:32])
	}
	if !bytes.Equal(b, orig) {
		t.Fatal("the replay changed the input")
	}
	// The image is still read whole: its data block is untouched by the
	// log, so it reads as qemu-img reads it after replaying.
	dir := t.TempDir()
	path := filepath.Join(dir, "log.vhdx")
	os.WriteFile(path, b, 0o644)
	oracle.MustRun(t, "check", "-r", "all", "-f", "vhdx", path)
	replayed, _ := os.ReadFile(path)
	if !bytes.Equal(replayed[:logSector], want) {
		t.Fatalf("qemu-img replays sector 0 as %q...", replayed[:32])
	}
	im, err := Open(bytes.NewReader(b), int64(len(b)), disk.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 1<<20)
	im.ReadAt(data, 0)
	if !bytes.Equal(data, bytes.Repeat([]byte("vhdx"), 1<<18)) {
		t.Fatal("data differs after the replay")
	}
}

// TestLogLimits: a log we will not replay in memory is refused, saying so.
func TestLogLimits(t *testing.T) {
	b := withLog(qemuImage(t, "block_size=1M,log_size=2M"), func([]byte) {})
	_, err := Inspect(bytes.NewReader(b), int64(len(b)), disk.Limits{MaxTableBytes: 1 << 20})
	if !errors.Is(err, disk.ErrLimit) || !strings.Contains(err.Error(), "replay in memory") {
		t.Fatalf("Inspect: %v", err)
	}
	// A log GUID with no valid entry: nothing to replay, as qemu reads it.
	b = withLog(qemuImage(t, "block_size=1M"), func(entry []byte) { copy(entry, "nope") })
	if _, err := Open(bytes.NewReader(b), int64(len(b)), disk.OpenOptions{}); err != nil {
		t.Fatalf("Open with an empty log: %v", err)
	}
}
