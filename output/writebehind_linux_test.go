package output

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Once an image's pages are on disk, the next kick of the write-behind
// drops them from the page cache (drop-behind); its content is unchanged.
func TestWriteBehindDropsWrittenPages(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &fs); err == nil && (fs.Type == unix.TMPFS_MAGIC || fs.Type == unix.RAMFS_MAGIC) {
		t.Skip("the page cache is the only copy of a file in memory file systems; set TMPDIR to a disk")
	}
	const size = 2 * WriteBehindStep
	block := bytes.Repeat([]byte{0x5a}, 1<<20)
	wb := (&Temp{File: f}).StartWriteBehind(true)
	for off := int64(0); off < size; off += int64(len(block)) {
		if _, err := f.WriteAt(block, off); err != nil {
			t.Fatal(err)
		}
		wb.Progress(off + int64(len(block)))
	}
	// Everything is on disk now, so one more kick drops all of it.
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	wb.Progress(size + WriteBehindStep)
	wb.Stop()

	if cached := residentPages(t, f, size); cached > size/os.Getpagesize()/8 {
		t.Errorf("%d of %d pages of the written image are still in the page cache", cached, size/os.Getpagesize())
	}
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bytes.Repeat([]byte{0x5a}, size)) {
		t.Fatal("the image's content changed")
	}
}

// residentPages counts the pages of f's first size bytes in the page cache.
func residentPages(t *testing.T, f *os.File, size int) int {
	t.Helper()
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (size+os.Getpagesize()-1)/os.Getpagesize())
	// x/sys/unix has no wrapper for mincore(2).
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}
