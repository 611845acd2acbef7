package fetch

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type tarEntry struct {
	name string
	typ  byte
	data []byte
	size int64 // the header's size when data is nil
}

func makeTar(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o440, Size: int64(len(e.data))}
		if e.typ == tar.TypeDir || e.typ == tar.TypeSymlink {
			h.Size = 0
			h.Linkname = "/etc/passwd"
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.data)
	}
	tw.Close()
	return buf.Bytes()
}

// layerRequest serves blob as a layer, counting how often it is opened.
func layerRequest(cache string, blob []byte, compression string, opens *int) LayerRequest {
	return LayerRequest{
		Digest: "sha256:" + sha256hex(blob), Size: int64(len(blob)), Compression: compression, Dir: "disk",
		Source: "oci://registry.test/vm/x:1", CacheDir: cache,
		Open: func(context.Context) (io.ReadCloser, error) {
			*opens++
			return io.NopCloser(bytes.NewReader(blob)), nil
		},
	}
}

func fetchLayerT(t *testing.T, req LayerRequest, opts ...Option) (*Result, error) {
	t.Helper()
	res, err := FetchLayer(context.Background(), req, opts...)
	if err == nil {
		t.Cleanup(func() { res.File.Close() })
	}
	return res, err
}

func kindOf(err error) Kind {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Kind
	}
	return 0
}

// The disk comes out of the layer whole and sparse, whatever the layer's
// compression and however its entries are spelt; the second time it comes
// from the cache, without a download.
func TestFetchLayer(t *testing.T) {
	disk := payload(3<<20 + 77)
	for _, tc := range []struct {
		name, compression, member string
	}{
		{"plain", "", "disk/img.qcow2"},
		{"gzip", "gzip", "./disk/img.qcow2"},
		{"zstd", "zstd", "/disk/img.qcow2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := t.TempDir()
			blob := makeTar(t,
				tarEntry{name: "etc/", typ: tar.TypeDir},
				tarEntry{name: "etc/hosts", typ: tar.TypeReg, data: []byte("127.0.0.1 x\n")},
				tarEntry{name: "disk/", typ: tar.TypeDir},
				tarEntry{name: "disk/.wh.old.qcow2", typ: tar.TypeReg},
				tarEntry{name: "disk/sub/other", typ: tar.TypeReg, data: []byte("nested")},
				tarEntry{name: tc.member, typ: tar.TypeReg, data: disk},
			)
			if tc.compression != "" {
				blob = compress(t, tc.compression, blob)
			}
			opens := 0
			req := layerRequest(cache, blob, tc.compression, &opens)
			var last Progress
			res, err := fetchLayerT(t, req, WithProgress(func(p Progress) { last = p }))
			if err != nil {
				t.Fatal(err)
			}
			checkContent(t, res, disk)
			if res.Member != "disk/img.qcow2" || res.CacheHit || res.Algorithm != "sha256" || res.Digest != sha256hex(blob) || res.Size != int64(len(blob)) {
				t.Errorf("result %+v", res)
			}
			if last.Done != int64(len(blob)) || last.Total != int64(len(blob)) {
				t.Errorf("last progress %+v", last)
			}
			// The zero third of the payload is a hole.
			if alloc, ok := allocated(t, res.Path); ok && alloc > int64(len(disk))-(1<<20)+64<<10 {
				t.Errorf("%d bytes allocated for %d bytes with a 1 MiB hole", alloc, len(disk))
			}

			res2, err := fetchLayerT(t, req)
			if err != nil || !res2.CacheHit || opens != 1 || res2.Member != "disk/img.qcow2" {
				t.Fatalf("second fetch: hit %v, %d opens, %v\n%q", res2.CacheHit, opens, err, res2.Messages)
			}
			checkContent(t, res2, disk)

			// A damaged cached copy is noticed and pulled again.
			f, _ := os.OpenFile(res.Path, os.O_RDWR, 0)
			f.WriteAt([]byte{0x42}, 5)
			f.Close()
			res3, err := fetchLayerT(t, req)
			if err != nil || res3.CacheHit || opens != 2 || !hasMessage(res3, "damaged") {
				t.Fatalf("damaged copy: hit %v, %d opens, %v %q", res3.CacheHit, opens, err, res3.Messages)
			}
			checkContent(t, res3, disk)
		})
	}
}

// Bytes that are not the layer asked for are a checksum failure, and
// nothing is kept; a layer without a disk, with two, or that is no tar,
// says so once its bytes are known to be the right ones.
func TestFetchLayerRefusals(t *testing.T) {
	disk := payload(100_000)
	good := makeTar(t, tarEntry{name: "disk/a.raw", typ: tar.TypeReg, data: disk})
	for _, tc := range []struct {
		name   string
		blob   []byte
		edit   func(*LayerRequest, []byte)
		opts   []Option
		kind   Kind
		is     error
		phrase string
	}{
		{name: "wrong digest", blob: good, edit: func(r *LayerRequest, b []byte) { r.Digest = "sha256:" + strings.Repeat("0", 64) },
			kind: KindChecksum, is: ErrChecksumMismatch, phrase: "does not match its digest"},
		{name: "damaged in transit", blob: good, edit: func(r *LayerRequest, b []byte) {
			damaged := bytes.Clone(b)
			damaged[600] ^= 1
			r.Open = func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(damaged)), nil }
		}, kind: KindChecksum, is: ErrChecksumMismatch, phrase: "does not match its digest"},
		{name: "longer than its manifest says", blob: good, edit: func(r *LayerRequest, b []byte) { r.Size -= 10 },
			kind: KindChecksum, is: ErrChecksumMismatch, phrase: "longer than"},
		{name: "shorter", blob: good, edit: func(r *LayerRequest, b []byte) { r.Size += 10 },
			kind: KindDownload, is: ErrShortBody, phrase: "sent"},
		{name: "no disk", blob: makeTar(t, tarEntry{name: "etc/x", typ: tar.TypeReg, data: []byte("x")}, tarEntry{name: "disk/link", typ: tar.TypeSymlink}),
			kind: KindNotImage, is: ErrNoMember, phrase: "no file in /disk/"},
		{name: "two disks", blob: makeTar(t, tarEntry{name: "disk/a", typ: tar.TypeReg, data: []byte("a")}, tarEntry{name: "disk/b", typ: tar.TypeReg, data: []byte("b")}),
			kind: KindNotImage, phrase: "more than one file"},
		{name: "not a tar", blob: bytes.Repeat([]byte("not a tar "), 200), kind: KindNotImage, phrase: "not a tar"},
		{name: "cut short", blob: good[:2048], kind: KindNotImage, phrase: "cut short"},
		{name: "gzip that is not", blob: good, edit: func(r *LayerRequest, b []byte) { r.Compression = "gzip" }, kind: KindNotImage, phrase: "gzip"},
		{name: "over the limit", blob: good, opts: []Option{WithMaxSize(1000)}, kind: KindDownload, is: ErrTooLarge, phrase: "--max-download-size"},
		{name: "a bomb", blob: compress(t, "gzip", makeTar(t, tarEntry{name: "disk/a.raw", typ: tar.TypeReg, data: make([]byte, 4<<20)})),
			edit: func(r *LayerRequest, b []byte) { r.Compression = "gzip" }, opts: []Option{WithMaxSize(1 << 20)}, kind: KindDownload, is: ErrTooLarge, phrase: "more than the limit"},
		{name: "open fails", blob: good, edit: func(r *LayerRequest, b []byte) {
			r.Open = func(context.Context) (io.ReadCloser, error) { return nil, errors.New("the registry is away") }
		}, kind: KindDownload, phrase: "the registry is away"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := t.TempDir()
			opens := 0
			req := layerRequest(cache, tc.blob, "", &opens)
			if tc.edit != nil {
				tc.edit(&req, tc.blob)
			}
			_, err := fetchLayerT(t, req, tc.opts...)
			if kindOf(err) != tc.kind || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.phrase) {
				t.Fatalf("%v (kind %v), want %v, %v, %q", err, kindOf(err), tc.kind, tc.is, tc.phrase)
			}
			entries, _ := os.ReadDir(filepath.Join(cache, "layers"))
			for _, e := range entries {
				t.Errorf("left in the cache: %s", e.Name())
			}
		})
	}
}

// FuzzFetchLayer takes a disk out of arbitrary layer bytes (whose digest
// is theirs, so that the tar is what is tested): no panic, no hang, a
// limit that holds, and nothing in the cache but a whole disk.
func FuzzFetchLayer(f *testing.F) {
	f.Add(makeTarF(f, tarEntry{name: "disk/a.raw", typ: tar.TypeReg, data: []byte("a disk")}), "")
	f.Add(makeTarF(f, tarEntry{name: "disk/", typ: tar.TypeDir}, tarEntry{name: "./disk/b.qcow2", typ: tar.TypeReg, data: bytes.Repeat([]byte{0, 1}, 3000)}), "")
	f.Add(makeTarF(f, tarEntry{name: "disk/a", typ: tar.TypeReg, data: []byte("a")}, tarEntry{name: "disk/b", typ: tar.TypeReg, data: []byte("b")}), "")
	f.Add(compressF(f, makeTarF(f, tarEntry{name: "disk/z.raw", typ: tar.TypeReg, data: make([]byte, 70000)})), "gzip")
	f.Add([]byte("not a tar at all"), "zstd")
	const limit = 1 << 20
	f.Fuzz(func(t *testing.T, blob []byte, compression string) {
		if compression != "" && compression != "gzip" && compression != "zstd" {
			compression = ""
		}
		cache := t.TempDir()
		opens := 0
		req := layerRequest(cache, blob, compression, &opens)
		res, err := FetchLayer(context.Background(), req, WithMaxSize(limit))
		if err != nil {
			if kindOf(err) == 0 {
				t.Fatalf("not an *Error: %v", err)
			}
			if entries, _ := os.ReadDir(filepath.Join(cache, "layers")); len(entries) != 0 {
				t.Fatalf("a failed pull left %v", entries)
			}
			return
		}
		defer res.File.Close()
		st, err := res.File.Stat()
		if err != nil || st.Size() > limit || !strings.HasPrefix(res.Member, "disk/") {
			t.Fatalf("result %+v, size %v, %v", res, st, err)
		}
	})
}

func makeTarF(f *testing.F, entries ...tarEntry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o440, Size: int64(len(e.data))}
		if e.typ == tar.TypeDir {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			f.Fatal(err)
		}
		tw.Write(e.data)
	}
	tw.Close()
	return buf.Bytes()
}

func compressF(f *testing.F, data []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	zw.Close()
	return buf.Bytes()
}
