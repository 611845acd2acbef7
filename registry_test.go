package genvm

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/arch"
	"github.com/ucphhpc/gen-vm-image-go/checksum"
	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
	"github.com/ucphhpc/gen-vm-image-go/internal/registrytest"
	"github.com/ucphhpc/gen-vm-image-go/record"
)

// isolateCredentials keeps the tests away from the user's Docker
// credentials.
func isolateCredentials(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("REGISTRY_AUTH_FILE", "")
}

// A qcow2 pushed as a containerDisk is an input: its disk comes out of the
// layer, verified and cached, and converts like any input; the second time
// it comes from the cache.
func TestPushThenGenerateFromOCI(t *testing.T) {
	isolateCredentials(t)
	reg := registrytest.Start(t, registrytest.Config{})
	ctx := context.Background()
	dir, cache := t.TempDir(), t.TempDir()
	raw := filepath.Join(dir, "in.raw")
	if err := os.WriteFile(raw, rawInput(), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := Generate(ctx, Spec{Name: "src", Size: "1M", Input: &Input{Path: raw}, OutputDirectory: dir})
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Addr + "/vm/src:1"
	pr, err := Push(ctx, PushSpec{File: src.Path, Reference: ref}, WithInsecureRegistry())
	if err != nil {
		t.Fatalf("%v\n%q", err, pr.Messages)
	}
	if pr.Pushed.Reference != ref || !strings.HasPrefix(pr.Pushed.Digest, "sha256:") || pr.Pushed.Pinned() != reg.Addr+"/vm/src@"+pr.Pushed.Digest {
		t.Errorf("pushed %+v", pr.Pushed)
	}
	again, err := Push(ctx, PushSpec{File: src.Path, Reference: reg.Addr + "/vm/copy:2"}, WithInsecureRegistry())
	if err != nil || again.Pushed.Digest != pr.Pushed.Digest {
		t.Errorf("the same file pushed again: %v %+v, first %s", err, again.Pushed, pr.Pushed.Digest)
	}

	fileSum := hexSHA256(mustRead(t, src.Path))
	for i, in := range []*Input{
		NewInput("oci://" + ref),
		{OCI: reg.Addr + "/vm/src@" + pr.Pushed.Digest, Checksum: &checksum.Spec{Type: "sha256", Value: fileSum}},
	} {
		out := t.TempDir()
		res, err := Generate(ctx, Spec{Name: "pulled", Size: "2M", Format: "raw", Input: in, OutputDirectory: out}, WithInsecureRegistry(), WithCacheDir(cache))
		if err != nil {
			t.Fatalf("%v\n%q", err, res.Messages)
		}
		oracle.AssertSame(t, src.Path, "qcow2", res.Path, "raw")
		msgs := strings.Join(res.Messages, "\n")
		if i == 1 && (!strings.Contains(msgs, "Cache hit") || !strings.Contains(msgs, "matches the defined checksum")) {
			t.Errorf("second pull: no cache hit or no checksum:\n%s", msgs)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// What goes wrong with a registry input has the right code: the registry's
// refusals and absences 10, bytes that are not what the digest says 6, a
// checksum of the disk that does not match 6, a reference that cannot be
// one 5.
func TestOCIInputErrors(t *testing.T) {
	isolateCredentials(t)
	reg := registrytest.Start(t, registrytest.Config{})
	ctx := context.Background()
	dir := t.TempDir()
	disk := filepath.Join(dir, "d.raw")
	os.WriteFile(disk, rawInput(), 0o644)
	pr, err := Push(ctx, PushSpec{File: disk, Reference: reg.Addr + "/vm/d:1"}, WithInsecureRegistry())
	if err != nil {
		t.Fatal(err)
	}
	gen := func(in *Input, opts ...Option) error {
		_, err := Generate(ctx, Spec{Name: "x", Size: "1M", Input: in, OutputDirectory: t.TempDir()},
			append([]Option{WithInsecureRegistry(), WithCacheDir(t.TempDir())}, opts...)...)
		return err
	}
	for _, tc := range []struct {
		name string
		in   *Input
		opts []Option
		code int
		msg  string
	}{
		{"missing tag", &Input{OCI: reg.Addr + "/vm/d:2"}, nil, CodeDownload, "no tag 2"},
		{"wrong digest", &Input{OCI: reg.Addr + "/vm/d@sha256:" + strings.Repeat("1", 64)}, nil, CodeDownload, "no image with the digest"},
		{"bad reference", &Input{OCI: reg.Addr + "/VM/d:1"}, nil, CodeInvalidAttribute, "invalid image reference"},
		{"path and oci", &Input{OCI: reg.Addr + "/vm/d:1", Path: disk}, nil, CodeInvalidAttribute, "Both a path and an oci reference"},
		{"checksum of the disk", &Input{OCI: reg.Addr + "/vm/d:1", Checksum: &checksum.Spec{Type: "sha256", Value: strings.Repeat("0", 64)}}, nil, CodeChecksum, "does not match"},
		{"over the size limit", &Input{OCI: reg.Addr + "/vm/d:1"}, []Option{WithMaxDownloadSize(4096)}, CodeDownload, "--max-download-size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := gen(tc.in, tc.opts...)
			if CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("code %d, %v; want %d saying %q", CodeOf(err), err, tc.code, tc.msg)
			}
		})
	}

	// The registry serves a damaged layer: a digest mismatch, and nothing
	// is kept in the cache.
	layer := layerOf(t, reg, pr.Pushed.Digest)
	reg.Damage(t, layer, func(b []byte) { b[2000] ^= 0xff })
	cache := t.TempDir()
	_, err = Generate(ctx, Spec{Name: "x", Size: "1M", Input: &Input{OCI: reg.Addr + "/vm/d:1"}, OutputDirectory: t.TempDir()}, WithInsecureRegistry(), WithCacheDir(cache))
	if CodeOf(err) != CodeChecksum || !strings.Contains(err.Error(), "does not match its digest") {
		t.Errorf("damaged layer: code %d, %v", CodeOf(err), err)
	}
	if entries, _ := os.ReadDir(filepath.Join(cache, "layers")); len(entries) != 0 {
		t.Errorf("a damaged layer left %v in the cache", entries)
	}
}

// layerOf is the digest of the one layer of the image with manifest
// digest.
func layerOf(t *testing.T, reg *registrytest.Registry, digest string) string {
	t.Helper()
	m := mustRead(t, reg.BlobPath(digest))
	i := bytes.Index(m, []byte(`"layers":[`))
	j := bytes.Index(m[i:], []byte(`"digest":"`))
	if i < 0 || j < 0 {
		t.Fatalf("no layer in %s", m)
	}
	start := i + j + len(`"digest":"`)
	return string(m[start : start+len("sha256:")+64])
}

// Build pushes every image it built to PREFIX/NAME:VERSION and says where,
// and refuses before building anything pushes that cannot work.
func TestBuildPush(t *testing.T) {
	isolateCredentials(t)
	reg := registrytest.Start(t, registrytest.Config{})
	ctx := context.Background()
	dir := t.TempDir()
	a, err := arch.Parse([]byte("owner: o\nimages:\n  a: {name: alpha, size: 1M, version: '1.0'}\n  b: {name: beta, size: 2M, format: raw}\n"), "a.yml")
	if err != nil {
		t.Fatal(err)
	}
	prefix := "oci://" + reg.Addr + "/vm/"
	res, err := Build(ctx, BuildSpec{Architecture: a, OutputDirectory: dir, Push: prefix}, WithInsecureRegistry())
	if err != nil {
		t.Fatalf("%v\n%q", err, res.Messages)
	}
	want := map[string]string{"a": reg.Addr + "/vm/alpha:1.0", "b": reg.Addr + "/vm/beta:latest"}
	for _, im := range res.Images {
		if im.Pushed == nil || im.Pushed.Reference != want[im.Key] || !strings.HasPrefix(im.Pushed.Digest, "sha256:") {
			t.Errorf("%s: pushed %+v, want %s", im.Key, im.Pushed, want[im.Key])
		}
	}
	if !strings.Contains(res.Summary, "pushed them to "+prefix) {
		t.Errorf("summary %q", res.Summary)
	}
	// The record says where each image went.
	m, err := record.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range res.Images {
		e := m.Lookup(filepath.Base(im.Path))
		if e == nil || e.Pushed == nil || e.Pushed.Reference != im.Pushed.Reference || e.Pushed.Digest != im.Pushed.Digest {
			t.Errorf("%s: the record has %+v", im.Key, e)
		}
	}
	// Kept images are pushed too, to the same digests.
	res2, err := Build(ctx, BuildSpec{Architecture: a, OutputDirectory: dir, Push: prefix}, WithInsecureRegistry())
	if err != nil || res2.Images[0].Created || res2.Images[0].Pushed.Digest != res.Images[0].Pushed.Digest {
		t.Errorf("second build: %v %+v", err, res2.Images[0])
	}

	for _, tc := range []struct {
		yaml, push, msg string
	}{
		{"owner: o\nimages:\n  a: {name: Alpha, size: 1M}\n", prefix, "image a cannot be pushed as " + reg.Addr + "/vm/Alpha:latest"},
		{"owner: o\nimages:\n  a: {name: alpha, size: 1M, format: vmdk}\n", prefix, "image a is a vmdk image"},
		{"owner: o\nimages:\n  a: {name: alpha, size: 1M, version: 'a+b'}\n", prefix, "alpha:a+b"},
	} {
		a, err := arch.Parse([]byte(tc.yaml), "a.yml")
		if err != nil {
			t.Fatal(err)
		}
		out := t.TempDir()
		_, err = Build(ctx, BuildSpec{Architecture: a, OutputDirectory: out, Push: tc.push}, WithInsecureRegistry())
		if CodeOf(err) != CodeInvalidAttribute || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: code %d, %v; want 5 saying %q", tc.yaml, CodeOf(err), err, tc.msg)
		}
		if entries, _ := os.ReadDir(out); len(entries) != 0 {
			t.Errorf("%q: built %v before refusing the push", tc.yaml, entries)
		}
	}
}

// Push takes raw and qcow2 images only, and says what is wrong with the
// rest before anything goes to the registry.
func TestPushRefusals(t *testing.T) {
	isolateCredentials(t)
	ctx := context.Background()
	dir := t.TempDir()
	vmdkPath := filepath.Join(dir, "v.vmdk")
	oracle.MustRun(t, "create", "-q", "-f", "vmdk", vmdkPath, "1M")
	vmdk := &Result{Path: vmdkPath}
	for _, tc := range []struct {
		spec PushSpec
		code int
		msg  string
	}{
		{PushSpec{File: vmdk.Path, Reference: "127.0.0.1:1/vm/v:1"}, CodeInvalidAttribute, "KubeVirt reads raw and qcow2"},
		{PushSpec{File: filepath.Join(dir, "missing.qcow2"), Reference: "127.0.0.1:1/vm/v:1"}, CodePathNotFound, "does not exist"},
		{PushSpec{File: vmdk.Path, Reference: "127.0.0.1:1/vm/v@sha256:" + strings.Repeat("a", 64)}, CodeInvalidAttribute, "push to a tag"},
		{PushSpec{File: vmdk.Path, Reference: "127.0.0.1:1/vm/v:1", Platform: "linux"}, CodeInvalidAttribute, "Invalid platform"},
		{PushSpec{File: vmdk.Path}, CodeMissingAttribute, "reference"},
	} {
		res, err := Push(ctx, tc.spec)
		if CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.msg) || res.Pushed != nil {
			t.Errorf("%+v: code %d, %v; want %d saying %q", tc.spec, CodeOf(err), err, tc.code, tc.msg)
		}
	}
}

// A tag moved to another image is followed: the cache is keyed by the
// layer's digest, never by a tag, so the old disk is never served for it.
func TestMovedTagIsFollowed(t *testing.T) {
	isolateCredentials(t)
	reg := registrytest.Start(t, registrytest.Config{})
	ctx := context.Background()
	dir, cache := t.TempDir(), t.TempDir()
	ref := reg.Addr + "/vm/moving:stable"
	for i, content := range []string{"the first image", "the second image"} {
		raw := filepath.Join(dir, "disk.raw")
		data := rawInput()
		copy(data[4096:], content)
		if err := os.WriteFile(raw, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Push(ctx, PushSpec{File: raw, Reference: ref}, WithInsecureRegistry()); err != nil {
			t.Fatal(err)
		}
		res, err := Generate(ctx, Spec{Name: "pulled", Size: "1M", Format: "raw", Input: &Input{OCI: ref}, OutputDirectory: t.TempDir()}, WithInsecureRegistry(), WithCacheDir(cache))
		if err != nil {
			t.Fatal(err)
		}
		if got := mustRead(t, res.Path); !bytes.Equal(got, data) {
			t.Fatalf("pull %d after the tag moved: not the image the tag names now", i+1)
		}
	}
}
