package disk

import (
	"fmt"

	"github.com/ucphhpc/gen-vm-image-go/size"
)

// Default limits. They are far above what real images use and far below
// what would cost us memory or time to look at.
const (
	// DefaultMaxVirtualSize is 64 TiB, the largest VHDX and about the
	// largest VMDK: no cloud or VM image comes near it.
	DefaultMaxVirtualSize = int64(64) << 40
	// DefaultMaxSnapshots bounds qcow2 internal snapshots (qemu allows
	// 65536; we never convert snapshots, and a table of thousands is a
	// known way to blow up tools that list them).
	DefaultMaxSnapshots = 1024
	// DefaultMaxTableBytes bounds any lookup table (qcow2 L1, VMDK grain
	// directory, VHD BAT, ...) a reader would have to hold: 32 MiB, qemu's
	// L1 cap.
	DefaultMaxTableBytes = int64(32) << 20
	// DefaultMaxDescriptorBytes bounds text metadata such as a VMDK
	// descriptor, embedded or not (qemu reads at most 1 MiB of one).
	DefaultMaxDescriptorBytes = int64(1) << 20
)

// Limits is what an untrusted image may declare and refer to: a format's
// Inspect refuses an image beyond them (ErrLimit) before anything is
// allocated for it. The zero value means the defaults.
type Limits struct {
	MaxVirtualSize     int64 // 0: DefaultMaxVirtualSize
	MaxSnapshots       int   // 0: DefaultMaxSnapshots
	MaxTableBytes      int64 // 0: DefaultMaxTableBytes
	MaxDescriptorBytes int64 // 0: DefaultMaxDescriptorBytes
}

// WithDefaults returns l with every limit left at zero set to its default.
func (l Limits) WithDefaults() Limits {
	if l.MaxVirtualSize <= 0 {
		l.MaxVirtualSize = DefaultMaxVirtualSize
	}
	if l.MaxSnapshots <= 0 {
		l.MaxSnapshots = DefaultMaxSnapshots
	}
	if l.MaxTableBytes <= 0 {
		l.MaxTableBytes = DefaultMaxTableBytes
	}
	if l.MaxDescriptorBytes <= 0 {
		l.MaxDescriptorBytes = DefaultMaxDescriptorBytes
	}
	return l
}

// CheckVirtualSize refuses a virtual size above the limit; what names the
// structure that declares it ("the qcow2 header").
func (l Limits) CheckVirtualSize(what string, bytes uint64) error {
	if limit := l.WithDefaults().MaxVirtualSize; bytes > uint64(limit) {
		return fmt.Errorf("%w: %s declares a virtual size of %d bytes (%s), more than the limit of %d bytes (%s)",
			ErrLimit, what, bytes, human(bytes), limit, human(uint64(limit)))
	}
	return nil
}

// CheckSectors is CheckVirtualSize for a size in 512-byte sectors, which
// may not fit in bytes.
func (l Limits) CheckSectors(what string, sectors uint64) error {
	if limit := l.WithDefaults().MaxVirtualSize; sectors > uint64(limit)/512 {
		return fmt.Errorf("%w: %s declares a virtual size of %d sectors (%s), more than the limit of %d bytes (%s)",
			ErrLimit, what, sectors, human(satMul(sectors, 512)), limit, human(uint64(limit)))
	}
	return nil
}

// CheckTable refuses a lookup table of entries entries of entrySize bytes
// beyond the limit on table bytes; what names it ("the grain directory").
func (l Limits) CheckTable(what string, entries, entrySize uint64) error {
	limit := uint64(l.WithDefaults().MaxTableBytes)
	if entrySize != 0 && entries > limit/entrySize {
		return fmt.Errorf("%w: %s of %d entries (%s) exceeds the limit of %s",
			ErrLimit, what, entries, human(satMul(entries, entrySize)), human(limit))
	}
	return nil
}

// satMul multiplies without wrapping around (saturates at the maximum).
func satMul(a, b uint64) uint64 {
	if a != 0 && b > ^uint64(0)/a {
		return ^uint64(0)
	}
	return a * b
}

// human formats a byte count for messages as qemu-img does: 64 TiB,
// 1.5 GiB.
func human(n uint64) string {
	if n > 1<<63-1 {
		return "more than 8 EiB"
	}
	return size.Format(int64(n))
}

// Quote shows a string found in an image (a file name, a key) in a
// message: quoted, escaped, and cut to a length that cannot flood a
// terminal.
func Quote(s string) string {
	const max = 128
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
