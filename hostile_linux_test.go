//go:build linux

package genvm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
)

// TestImagesOpenNothingElse watches, with inotify, the files that hostile
// images name (backing files, external data files, VMDK extents and
// parents, by absolute and by relative path) while each image goes through
// Generate: none of them may be opened or read. Only the image itself is.
func TestImagesOpenNothingElse(t *testing.T) {
	oracle.QemuImg(t)
	victims := t.TempDir() // files named by absolute path
	images := t.TempDir()  // the hostile images, and files named relatively
	// create runs qemu-img create; a size, when given, is the last argument.
	create := func(path string, args ...string) {
		var size []string
		if n := len(args); n > 0 && strings.HasSuffix(args[n-1], "M") {
			args, size = args[:n-1], args[n-1:]
		}
		oracle.MustRun(t, append(append(append([]string{"create", "-q"}, args...), path), size...)...)
	}
	for _, dir := range []string{victims, images} {
		create(filepath.Join(dir, "base.qcow2"), "-f", "qcow2", "1M")
		if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("do not read me\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var hostile []string
	add := func(name string, args ...string) {
		path := filepath.Join(images, name)
		create(path, args...)
		hostile = append(hostile, path)
	}
	add("abs-backing.qcow2", "-f", "qcow2", "-b", filepath.Join(victims, "base.qcow2"), "-F", "qcow2")
	add("rel-backing.qcow2", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2")
	add("json-backing.qcow2", "-f", "qcow2", "-u", "-b", `json:{"file.filename":"`+filepath.Join(victims, "secret")+`"}`, "-F", "raw", "1M")
	add("datafile.qcow2", "-f", "qcow2", "-o", "data_file="+filepath.Join(victims, "data.raw"), "1M")
	create(filepath.Join(images, "parent.vmdk"), "-f", "vmdk", "1M") // readable, and the parent child.vmdk names
	add("child.vmdk", "-f", "vmdk", "-b", "parent.vmdk", "-F", "vmdk")
	for name, extent := range map[string]string{"abs-extent.vmdk": filepath.Join(victims, "secret"), "rel-extent.vmdk": "secret"} {
		path := filepath.Join(images, name)
		desc := "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\nRW 2048 FLAT \"" + extent + "\" 0\n"
		if err := os.WriteFile(path, []byte(desc), 0o644); err != nil {
			t.Fatal(err)
		}
		hostile = append(hostile, path)
	}

	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		t.Skipf("inotify unavailable: %v", err)
	}
	defer syscall.Close(fd)
	for _, dir := range []string{victims, images} {
		if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_OPEN|syscall.IN_ACCESS); err != nil {
			t.Skipf("inotify watch: %v", err)
		}
	}
	for _, path := range hostile {
		drainInotify(t, fd) // events of the previous image
		out := t.TempDir()
		_, err := Generate(context.Background(), Spec{Name: "x", Size: "1G", OutputDirectory: out, Input: &Input{Path: path}})
		if err == nil {
			t.Errorf("%s: accepted", path)
		}
		for _, name := range drainInotify(t, fd) {
			if name != filepath.Base(path) {
				t.Errorf("%s: %s was opened or read while the image was handled (error: %v)", filepath.Base(path), name, err)
			}
		}
	}
}

// drainInotify returns the names in the pending inotify events.
func drainInotify(t *testing.T, fd int) []string {
	t.Helper()
	var names []string
	buf := make([]byte, 64<<10)
	for {
		n, err := syscall.Read(fd, buf)
		if err == syscall.EAGAIN || n <= 0 {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameBytes := buf[off+syscall.SizeofInotifyEvent : off+syscall.SizeofInotifyEvent+int(ev.Len)]
			names = append(names, strings.TrimRight(string(nameBytes), "\x00"))
			off += syscall.SizeofInotifyEvent + int(ev.Len)
		}
	}
}
