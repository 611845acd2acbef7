package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/stream"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The containerDisk layout. KubeVirt's user guide ("containerDisk"): the
// disk goes in /disk and must be readable by the user with UID 107 (qemu);
// raw and qcow2 are the formats it reads. The ownership and modes are those
// of kubevirt/containerdisks, the project's own containerDisks (disk/ 0555,
// both 107:107 "qemu"), with the file readable by its owner and group only,
// which is all KubeVirt needs.
const (
	DiskDir  = "disk" // the directory of the disk in the layer
	qemuID   = 107
	qemuName = "qemu"
	dirMode  = 0o555
	diskMode = 0o440
)

// LayerMediaType is the media type of the layer Push writes: an
// uncompressed tar. A qcow2 is compact already, and gzip would cost a core
// for the whole push and the whole pull; container runtimes and CDI read
// uncompressed layers as they read compressed ones.
const LayerMediaType = types.OCIUncompressedLayer

// CheckDiskName returns why name cannot be the disk's file name in /disk/,
// or nil.
func CheckDiskName(name string) error {
	switch {
	case name == "":
		return errors.New("the disk's name is empty")
	case name == "." || name == "..":
		return fmt.Errorf("the disk's name cannot be %q", name)
	case strings.ContainsAny(name, `/\`):
		return fmt.Errorf("the disk's name %q has a path separator: give a file name", name)
	case len(name) > 255:
		return fmt.Errorf("the disk's name is %d bytes long; file systems take 255", len(name))
	}
	for _, c := range name {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("the disk's name %q has a control character", name)
		}
	}
	return nil
}

// layerHeader is the start of the layer: the tar headers of disk/ and of
// disk/name, as archive/tar writes them (a PAX record joins them when the
// name or the size does not fit the ustar fields). Everything in them is
// fixed but the name and the size: nothing of the host leaks in, so the
// same disk always gives the same bytes.
func layerHeader(name string, size int64, mtime time.Time) ([]byte, error) {
	mtime = mtime.Truncate(time.Second)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeDir, Name: DiskDir + "/", Mode: dirMode, Uid: qemuID, Gid: qemuID, Uname: qemuName, Gname: qemuName, ModTime: mtime},
		{Typeflag: tar.TypeReg, Name: DiskDir + "/" + name, Size: size, Mode: diskMode, Uid: qemuID, Gid: qemuID, Uname: qemuName, Gname: qemuName, ModTime: mtime},
	} {
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar header of %s: %w", h.Name, err)
		}
	}
	// tw is not closed: what follows, the data and the end of the
	// archive, is the layer reader's to produce.
	return buf.Bytes(), nil
}

// tarBlock is the tar block size: data is padded to it, and the archive
// ends with two zero blocks (POSIX ustar).
const tarBlock = 512

// diskLayer is the containerDisk layer of a disk, streamed from the disk:
// the header, the disk's bytes, the padding and the end of the archive.
// Its size is known from the start and its digest once it has been read
// whole (or hashed on the side): an upload commits with the digest after
// streaming the bytes.
type diskLayer struct {
	disk     io.ReaderAt
	diskSize int64
	header   []byte
	size     int64
	progress func(Progress)

	mu     sync.Mutex
	digest *v1.Hash
}

func newDiskLayer(d Disk, mtime time.Time, progress func(Progress)) (*diskLayer, error) {
	if d.Size < 0 {
		return nil, fmt.Errorf("negative disk size %d", d.Size)
	}
	h, err := layerHeader(d.Name, d.Size, mtime)
	if err != nil {
		return nil, err
	}
	pad := (tarBlock - d.Size%tarBlock) % tarBlock
	return &diskLayer{disk: d.Content, diskSize: d.Size, header: h, size: int64(len(h)) + d.Size + pad + 2*tarBlock, progress: progress}, nil
}

func (l *diskLayer) Digest() (v1.Hash, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.digest == nil {
		return v1.Hash{}, stream.ErrNotComputed
	}
	return *l.digest, nil
}

// open starts a read of the whole layer (an upload that is retried reads
// it again).
func (l *diskLayer) open() io.ReadCloser {
	return &layerReader{l: l, r: l.bytes(), hash: sha256.New()}
}

// bytes reads the layer: the header, the disk, the padding and the end of
// the archive.
func (l *diskLayer) bytes() io.Reader {
	tail := l.size - int64(len(l.header)) - l.diskSize
	return io.MultiReader(bytes.NewReader(l.header),
		&exactReader{r: io.NewSectionReader(l.disk, 0, l.diskSize), left: l.diskSize},
		io.LimitReader(zeroReader{}, tail))
}

// hash reads the whole layer and returns its digest, without recording it
// or reporting progress: the upload's own read does both.
func (l *diskLayer) hash(ctx context.Context) (v1.Hash, error) {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	r := l.bytes()
	for {
		if err := ctx.Err(); err != nil {
			return v1.Hash{}, err
		}
		n, err := r.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}, nil
		}
		if err != nil {
			return v1.Hash{}, err
		}
	}
}

// setDigest records the layer's digest found by hash, for a layer that
// was not read to its end by an upload.
func (l *diskLayer) setDigest(h v1.Hash) {
	l.mu.Lock()
	l.digest = &h
	l.mu.Unlock()
}

// layerReader hashes the layer as it is read, and records the digest when
// it was read to its end.
type layerReader struct {
	l    *diskLayer
	r    io.Reader
	hash hash.Hash
	done int64
}

func (r *layerReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.hash.Write(p[:n])
	r.done += int64(n)
	if n > 0 && r.l.progress != nil {
		r.l.progress(Progress{Done: r.done, Total: r.l.size})
	}
	if err == io.EOF && r.done == r.l.size {
		h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(r.hash.Sum(nil))}
		r.l.mu.Lock()
		r.l.digest = &h
		r.l.mu.Unlock()
	}
	return n, err
}

func (r *layerReader) Close() error { return nil }

// ErrDiskChanged: the disk was shorter, while it was read, than when the
// push started.
var ErrDiskChanged = errors.New("the disk image shrank while it was being pushed")

// exactReader reads left bytes of r, and fails if r ends before.
type exactReader struct {
	r    io.Reader
	left int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF && e.left > 0 {
		return n, ErrDiskChanged
	}
	if err == io.EOF {
		err = nil // the next Read says EOF
	}
	return n, err
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
