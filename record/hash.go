package record

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"

	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/disk/raw"
)

// hashChunk is how much is read at a time, and how often ctx is looked at.
const hashChunk = 1 << 20

// HashFile returns the SHA-256 of f's bytes, and its size. The file's
// holes are not read: the file system says where they are (raw's extents,
// SEEK_DATA), and zeros are hashed in their place, which is all a hole
// costs — a sparse image of 20 GiB with 1 GiB of data reads 1 GiB.
func HashFile(ctx context.Context, f *os.File) (digest string, size int64, err error) {
	st, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	size = st.Size()
	img, err := raw.Open(f, size, disk.OpenOptions{})
	if err != nil {
		return "", 0, err
	}
	defer img.Close()
	h := sha256.New()
	buf := make([]byte, hashChunk)
	zeros := make([]byte, hashChunk)
	for off := int64(0); off < size; {
		n := min(size-off, 64<<30) // extents in bounded batches
		extents, err := img.Extents(off, n)
		if err != nil {
			return "", 0, err
		}
		for _, e := range extents {
			for done := int64(0); done < e.Length; {
				if err := ctx.Err(); err != nil {
					return "", 0, err
				}
				k := min(e.Length-done, hashChunk)
				if e.Zero {
					h.Write(zeros[:k])
				} else {
					if _, err := f.ReadAt(buf[:k], e.Offset+done); err != nil {
						return "", 0, err
					}
					h.Write(buf[:k])
				}
				done += k
			}
		}
		off += n
	}
	return hex.EncodeToString(h.Sum(nil)), size, nil
}
