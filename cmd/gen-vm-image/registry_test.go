package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/internal/oracle"
	"github.com/ucphhpc/gen-vm-image-go/internal/registrytest"
)

// registryEnv keeps a run away from the user's Docker credentials: a home,
// a Docker configuration directory and a Podman one of its own.
func registryEnv(t *testing.T, extra ...string) []string {
	home := t.TempDir()
	return append([]string{"HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, "docker"), "XDG_CONFIG_HOME=" + home,
		"XDG_RUNTIME_DIR=" + home, "REGISTRY_AUTH_FILE=", "SOURCE_DATE_EPOCH="}, extra...)
}

// pinnedIn is the REGISTRY/REPOSITORY@sha256:... a push's response ends
// with.
func pinnedIn(t *testing.T, resp response) string {
	t.Helper()
	i := strings.LastIndex(resp.Response, ": ")
	if i < 0 || !strings.Contains(resp.Response[i:], "@sha256:") {
		t.Fatalf("no reference by digest in %q", resp.Response)
	}
	return resp.Response[i+2:]
}

// cachedDisks are the disks taken out of layers in the cache.
func cachedDisks(t *testing.T, cache string) []string {
	t.Helper()
	disks, _ := filepath.Glob(filepath.Join(cache, "layers", "*.image"))
	return disks
}

// push, then pull: the disk that comes out of the registry is the file
// that went in, byte for byte, and the image made from it is the same
// disk (qemu-img compare). The same file pushed again has the same digest.
func TestPushThenPull(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Config{})
	dir, cache := t.TempDir(), t.TempDir()
	env := registryEnv(t)
	_, qcow := patternImage(t, dir, 6<<20+4096, false)
	ref := reg.Addr + "/vm/pattern:1.0"

	r := gviEnv(t, dir, env, "push", qcow, ref, "--insecure", "-v")
	resp := r.result(t)
	if r.code != 0 {
		t.Fatalf("push: exit %d: %+v", r.code, resp)
	}
	pinned := pinnedIn(t, resp)
	if !strings.HasPrefix(pinned, reg.Addr+"/vm/pattern@sha256:") || !strings.Contains(strings.Join(resp.VerboseMessages, "\n"), "as a containerDisk") {
		t.Errorf("push response %+v", resp)
	}
	if again := gviEnv(t, dir, env, "push", qcow, reg.Addr+"/vm/pattern:again", "--insecure"); pinnedIn(t, again.result(t)) != pinned {
		t.Errorf("the same file pushed twice: %s, then %s", pinned, again.stdout)
	}

	for _, in := range []string{"oci://" + ref, "oci://" + pinned} {
		out := t.TempDir()
		r = gviEnv(t, dir, env, "single", "pulled", "64M", "-i", in, "--insecure", "--cache-dir", cache, "-od", out, "-v")
		if resp := r.result(t); r.code != 0 {
			t.Fatalf("single -i %s: exit %d: %+v", in, r.code, resp)
		}
		oracle.AssertSame(t, qcow, "qcow2", filepath.Join(out, "pulled.qcow2"), "qcow2")
	}
	disks := cachedDisks(t, cache)
	if len(disks) != 1 {
		t.Fatalf("cached disks %v, want one (the second pull is a cache hit)", disks)
	}
	got, _ := os.ReadFile(disks[0])
	want, _ := os.ReadFile(qcow)
	if !bytes.Equal(got, want) {
		t.Fatal("the disk pulled out of the registry differs from the file pushed")
	}
}

// A registry with basic authentication is reached with the credentials of
// the Docker configuration in DOCKER_CONFIG; without them, or with wrong
// ones, the refusal is code 10 and says what to do.
func TestRegistryLogin(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Config{Auth: true})
	dir := t.TempDir()
	_, qcow := patternImage(t, dir, 1<<20, false)
	ref := reg.Addr + "/vm/auth:1"

	r := gviEnv(t, dir, registryEnv(t), "push", qcow, ref, "--insecure")
	if resp := r.result(t); r.code != 10 || !strings.Contains(resp.Response, "docker login "+reg.Addr) {
		t.Errorf("no credentials: exit %d: %s", r.code, resp.Response)
	}
	wrong := reg.DockerConfig(t, reg.User, "not-the-password")
	r = gviEnv(t, dir, registryEnv(t, "DOCKER_CONFIG="+wrong), "push", qcow, ref, "--insecure")
	if resp := r.result(t); r.code != 10 || !strings.Contains(resp.Response, "refused the login") {
		t.Errorf("wrong password: exit %d: %s", r.code, resp.Response)
	}
	good := registryEnv(t, "DOCKER_CONFIG="+reg.DockerConfig(t, reg.User, reg.Password))
	if r = gviEnv(t, dir, good, "push", qcow, ref, "--insecure"); r.code != 0 {
		t.Fatalf("push with credentials: exit %d: %s", r.code, r.stderr)
	}
	out := t.TempDir()
	if r = gviEnv(t, dir, good, "single", "pulled", "1M", "-i", "oci://"+ref, "--insecure", "--cache-dir", t.TempDir(), "-od", out); r.code != 0 {
		t.Fatalf("pull with credentials: exit %d: %s", r.code, r.stderr)
	}
	oracle.AssertSame(t, qcow, "qcow2", filepath.Join(out, "pulled.qcow2"), "qcow2")
}

// A registry with a certificate from a private CA is reached when the CA
// is trusted through SSL_CERT_FILE, as Go reads it, and without --insecure;
// untrusted, it is code 10 saying how to trust it.
func TestRegistryPrivateCA(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Config{TLS: true})
	dir := t.TempDir()
	_, qcow := patternImage(t, dir, 1<<20, false)
	ref := reg.Addr + "/vm/tls:1"

	r := gviEnv(t, dir, registryEnv(t), "push", qcow, ref)
	if resp := r.result(t); r.code != 10 || !strings.Contains(resp.Response, "SSL_CERT_FILE") {
		t.Errorf("untrusted CA: exit %d: %s", r.code, resp.Response)
	}
	trusted := registryEnv(t, "SSL_CERT_FILE="+reg.CAFile)
	if r = gviEnv(t, dir, trusted, "push", qcow, ref); r.code != 0 {
		t.Fatalf("push with the CA trusted: exit %d: %s", r.code, r.stderr)
	}
	out := t.TempDir()
	if r = gviEnv(t, dir, trusted, "single", "pulled", "1M", "-i", "oci://"+ref, "--cache-dir", t.TempDir(), "-od", out); r.code != 0 {
		t.Fatalf("pull with the CA trusted: exit %d: %s", r.code, r.stderr)
	}
	oracle.AssertSame(t, qcow, "qcow2", filepath.Join(out, "pulled.qcow2"), "qcow2")
}

// What goes wrong with a registry is said, with the reference's codes: 10
// for the registry's refusals and absences, 6 for bytes that do not match
// their digest, 5 for what cannot be pushed, 2 for a command line that
// makes no sense.
func TestRegistryFailures(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Config{})
	dir := t.TempDir()
	env := registryEnv(t)
	_, qcow := patternImage(t, dir, 1<<20, false)
	r := gviEnv(t, dir, env, "push", qcow, reg.Addr+"/vm/f:1", "--insecure")
	pinned := pinnedIn(t, r.result(t))
	pull := func(in string) runResult {
		return gviEnv(t, dir, env, "single", "x", "1M", "-i", in, "--insecure", "--cache-dir", t.TempDir(), "-od", t.TempDir())
	}
	arch := filepath.Join(dir, "arch.yml")
	writeFile(t, arch, "owner: o\nimages:\n  a: {name: Upper, size: 1M}\n")
	for _, tc := range []struct {
		name string
		run  func() runResult
		code int
		msg  string
	}{
		{"missing tag", func() runResult { return pull("oci://" + reg.Addr + "/vm/f:2") }, 10, "has no tag 2 in vm/f"},
		{"missing repository", func() runResult { return pull("oci://" + reg.Addr + "/vm/none:1") }, 10, "vm/none"},
		{"wrong digest", func() runResult { return pull("oci://" + reg.Addr + "/vm/f@sha256:" + strings.Repeat("9", 64)) }, 10, "no image with the digest sha256:999"},
		{"plain HTTP without --insecure", func() runResult {
			return gviEnv(t, dir, env, "single", "x", "1M", "-i", "oci://"+pinned, "-od", t.TempDir(), "--cache-dir", t.TempDir())
		}, 10, "--insecure"},
		{"nothing listening", func() runResult { return pull("oci://127.0.0.1:1/vm/f:1") }, 10, "refused the connection"},
		{"not a reference", func() runResult { return pull("oci://" + reg.Addr + "/VM/f:1") }, 5, "invalid image reference"},
		{"push a missing file", func() runResult {
			return gviEnv(t, dir, env, "push", "nothing.qcow2", reg.Addr+"/vm/f:1", "--insecure")
		}, 1, "does not exist"},
		{"push a bad platform", func() runResult {
			return gviEnv(t, dir, env, "push", qcow, reg.Addr+"/vm/f:1", "--insecure", "--platform", "arm64")
		}, 5, "OS/ARCH"},
		{"bad SOURCE_DATE_EPOCH", func() runResult {
			return gviEnv(t, dir, append(env, "SOURCE_DATE_EPOCH=yesterday"), "push", qcow, reg.Addr+"/vm/f:1", "--insecure")
		}, 5, "SOURCE_DATE_EPOCH"},
		{"push a name that cannot be a repository", func() runResult {
			return gviEnv(t, dir, env, "multiple", arch, "--push", reg.Addr+"/vm", "--insecure", "-od", t.TempDir())
		}, 5, "image a cannot be pushed as " + reg.Addr + "/vm/Upper:latest"},
		{"an empty --push", func() runResult { return gviEnv(t, dir, env, "multiple", arch, "--push", "") }, 4, "--push is empty"},
		{"--platform without --push", func() runResult { return gviEnv(t, dir, env, "multiple", arch, "--platform", "linux/arm64") }, 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.run()
			if tc.code == 2 {
				if r.code != 2 || !strings.Contains(r.stderr, "argument --platform") {
					t.Errorf("exit %d: %s", r.code, r.stderr)
				}
				return
			}
			if resp := r.result(t); r.code != tc.code || !strings.Contains(resp.Response, tc.msg) {
				t.Errorf("exit %d: %s; want %d saying %q", r.code, resp.Response, tc.code, tc.msg)
			}
		})
	}

	// The registry serves a damaged layer: a digest mismatch (6), and no
	// image and no cached disk are left.
	layer := ""
	manifest, _ := os.ReadFile(reg.BlobPath(pinned[strings.Index(pinned, "@")+1:]))
	if i := bytes.Index(manifest, []byte(`"layers":[`)); i >= 0 {
		if j := bytes.Index(manifest[i:], []byte(`"sha256:`)); j >= 0 {
			layer = string(manifest[i+j+1 : i+j+1+len("sha256:")+64])
		}
	}
	reg.Damage(t, layer, func(b []byte) { b[len(b)/2] ^= 0x01 })
	cache, out := t.TempDir(), t.TempDir()
	r = gviEnv(t, dir, env, "single", "x", "1M", "-i", "oci://"+pinned, "--insecure", "--cache-dir", cache, "-od", out)
	if resp := r.result(t); r.code != 6 || !strings.Contains(resp.Response, "does not match its digest") {
		t.Errorf("damaged layer: exit %d: %s", r.code, resp.Response)
	}
	if d := cachedDisks(t, cache); len(d) != 0 {
		t.Errorf("a damaged layer left %v in the cache", d)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("a damaged layer left %v in the output directory", entries)
	}
}

// multiple --push pushes every image it built to PREFIX/NAME:VERSION; an
// image built from a containerDisk is pushed like any other, and what was
// pushed can be pulled by its tag.
func TestMultiplePush(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Config{})
	dir := t.TempDir()
	env := registryEnv(t)
	_, qcow := patternImage(t, dir, 2<<20, false)
	if r := gviEnv(t, dir, env, "push", qcow, reg.Addr+"/base/pattern:1", "--insecure"); r.code != 0 {
		t.Fatalf("push: %s", r.stderr)
	}
	arch := filepath.Join(dir, "arch.yml")
	writeFile(t, arch, `owner: o
images:
  blank:
    name: blank
    size: 1M
  from-registry:
    name: derived
    version: "2.0"
    size: 4M
    format: raw
    input:
      oci: oci://`+reg.Addr+`/base/pattern:1
`)
	out := filepath.Join(dir, "out")
	r := gviEnv(t, dir, env, "multiple", arch, "-od", out, "--push", reg.Addr+"/built", "--insecure", "--cache-dir", t.TempDir(), "-v")
	resp := r.result(t)
	if r.code != 0 || !strings.Contains(resp.Response, "pushed them to "+reg.Addr+"/built") {
		t.Fatalf("multiple --push: exit %d: %+v", r.code, resp)
	}
	msgs := strings.Join(resp.VerboseMessages, "\n")
	for _, ref := range []string{reg.Addr + "/built/blank:latest", reg.Addr + "/built/derived:2.0"} {
		if !strings.Contains(msgs, "to oci://"+ref+" as a containerDisk: sha256:") {
			t.Errorf("no push of %s in\n%s", ref, msgs)
		}
	}
	pulled := t.TempDir()
	if r := gviEnv(t, dir, env, "single", "again", "4M", "-of", "raw", "-i", "oci://"+reg.Addr+"/built/derived:2.0", "--insecure", "--cache-dir", t.TempDir(), "-od", pulled); r.code != 0 {
		t.Fatalf("pull of a pushed image: %s", r.stderr)
	}
	oracle.AssertSame(t, filepath.Join(out, "derived-2.0.raw"), "raw", filepath.Join(pulled, "again.raw"), "raw")
	oracle.AssertSame(t, qcow, "qcow2", filepath.Join(pulled, "again.raw"), "raw")
}
