package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ucphhpc/gen-vm-image-go/internal/registrytest"
)

// isolate keeps the tests away from the user's Docker credentials.
func isolate(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("REGISTRY_AUTH_FILE", "")
}

func randomDisk(t *testing.T, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// pullDisk reads the one layer of ref and returns its tar entries and the
// disk's bytes.
func pullDisk(t *testing.T, ref string, opts ...Option) (*Image, []*tar.Header, []byte) {
	t.Helper()
	ctx := context.Background()
	im, err := Resolve(ctx, ref, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Layers) != 1 {
		t.Fatalf("%d layers", len(im.Layers))
	}
	rc, err := im.Open(ctx, im.Layers[0])
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var hdrs []*tar.Header
	var disk []byte
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, h)
		if h.Typeflag == tar.TypeReg {
			disk, _ = io.ReadAll(tr)
		}
	}
	return im, hdrs, disk
}

// A push is pulled back byte for byte, in the containerDisk layout, with
// the media types and configuration runtimes expect; the same disk pushed
// again (to another tag) is the same image.
func TestPushPull(t *testing.T) {
	isolate(t)
	reg := registrytest.Start(t, registrytest.Config{})
	ctx := context.Background()
	content := randomDisk(t, 3<<20+123)
	var last Progress
	pushed, err := Push(ctx, reg.Addr+"/vm/test:1.0", Disk{Name: "test-1.0.qcow2", Content: bytes.NewReader(content), Size: int64(len(content))},
		WithInsecure(), WithProgress(func(p Progress) { last = p }))
	if err != nil {
		t.Fatal(err)
	}
	if last.Total != pushed.Size || last.Done != pushed.Size {
		t.Errorf("progress ended at %+v, the layer is %d bytes", last, pushed.Size)
	}
	if !strings.HasPrefix(pushed.Digest, "sha256:") || pushed.Reference != reg.Addr+"/vm/test:1.0" || pushed.Pinned() != reg.Addr+"/vm/test@"+pushed.Digest {
		t.Errorf("pushed %+v (pinned %s)", pushed, pushed.Pinned())
	}

	im, hdrs, disk := pullDisk(t, Scheme+reg.Addr+"/vm/test:1.0", WithInsecure())
	if !bytes.Equal(disk, content) {
		t.Fatal("the pulled disk differs from the pushed one")
	}
	if im.Digest != pushed.Digest || im.Layers[0].Digest != pushed.Layer || im.Layers[0].Size != pushed.Size ||
		im.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar" || im.Layers[0].Compression != "" {
		t.Errorf("resolved %+v, pushed %+v", im, pushed)
	}
	if len(hdrs) != 2 || hdrs[0].Name != "disk/" || hdrs[1].Name != "disk/test-1.0.qcow2" {
		t.Fatalf("entries %v", hdrs)
	}
	for _, h := range hdrs {
		if h.Uid != 107 || h.Gid != 107 || !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: owner %d:%d, time %v", h.Name, h.Uid, h.Gid, h.ModTime)
		}
	}
	if hdrs[1].Mode != 0o440 {
		t.Errorf("disk mode %o", hdrs[1].Mode)
	}

	// The manifest and the configuration, as a runtime reads them.
	get := func(path, accept string) []byte {
		req, _ := http.NewRequest("GET", reg.URL()+path, nil)
		req.Header.Set("Accept", accept)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s %s", path, resp.Status, b)
		}
		return b
	}
	var m struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		Config        struct {
			MediaType, Digest string
		}
		Layers []struct {
			MediaType, Digest string
			Size              int64
		}
	}
	raw := get("/v2/vm/test/manifests/1.0", "application/vnd.oci.image.manifest.v1+json")
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.SchemaVersion != 2 || m.MediaType != "application/vnd.oci.image.manifest.v1+json" || m.Config.MediaType != "application/vnd.oci.image.config.v1+json" ||
		len(m.Layers) != 1 || m.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar" {
		t.Errorf("manifest %s", raw)
	}
	var cfg struct {
		Architecture, OS, Created string
		RootFS                    struct {
			Type    string
			DiffIDs []string `json:"diff_ids"`
		}
	}
	json.Unmarshal(get("/v2/vm/test/blobs/"+m.Config.Digest, "*/*"), &cfg)
	if cfg.Architecture != "amd64" || cfg.OS != "linux" || cfg.Created != "1970-01-01T00:00:00Z" || cfg.RootFS.Type != "layers" ||
		len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != pushed.Layer {
		t.Errorf("config %+v", cfg)
	}

	again, err := Push(ctx, reg.Addr+"/other/name:latest", Disk{Name: "test-1.0.qcow2", Content: bytes.NewReader(content), Size: int64(len(content))}, WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest != pushed.Digest || again.Layer != pushed.Layer {
		t.Errorf("the same disk pushed twice: %s, then %s", pushed.Digest, again.Digest)
	}
	arm, err := Push(ctx, reg.Addr+"/vm/test:arm", Disk{Name: "test-1.0.qcow2", Content: bytes.NewReader(content), Size: int64(len(content))},
		WithInsecure(), WithPlatform("linux/arm64"), WithCreated(time.Unix(1700000000, 0)))
	if err != nil {
		t.Fatal(err)
	}
	if arm.Digest == pushed.Digest || arm.Layer == pushed.Layer {
		t.Errorf("another platform and time gave the same image")
	}
	// An image of another platform is found as it is: it is no index.
	if im, err := Resolve(ctx, reg.Addr+"/vm/test:arm", WithInsecure()); err != nil || im.Digest != arm.Digest {
		t.Errorf("resolve arm64 image: %v", err)
	}
}

// zeros is a disk of n zero bytes that takes no memory.
type zeros int64

func (z zeros) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(z) {
		return 0, io.EOF
	}
	n := min(int64(len(p)), int64(z)-off)
	clear(p[:n])
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

// A disk pushed again to its repository (another tag, a nightly rebuild
// of the same bytes) is not sent again: the registry has its layer, which
// the push finds out while the upload has only begun; the image is the
// same and the registry serves it under the new tag.
func TestPushSkipsALayerTheRegistryHas(t *testing.T) {
	isolate(t)
	reg := registrytest.Start(t, registrytest.Config{})
	ctx := context.Background()
	// Large enough that hashing it on the side (a quarter of a second)
	// ends long before a registry has taken it all in.
	disk := Disk{Name: "big.raw", Content: zeros(256 << 20), Size: 256 << 20}
	first, err := Push(ctx, reg.Addr+"/vm/big:1", disk, WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	if first.LayerExisted {
		t.Error("the first push found the layer in an empty registry")
	}
	var seen []Progress
	again, err := Push(ctx, reg.Addr+"/vm/big:2", disk, WithInsecure(), WithProgress(func(p Progress) { seen = append(seen, p) }))
	if err != nil {
		t.Fatal(err)
	}
	if !again.LayerExisted {
		t.Error("the layer was sent again, though the registry had it")
	}
	if again.Digest != first.Digest || again.Layer != first.Layer || again.Size != first.Size {
		t.Errorf("pushed again %+v, first %+v", again, first)
	}
	// The bytes sent stop short of the layer's end; the progress then
	// ends at the whole layer, which the registry has.
	if n := len(seen); n < 2 || seen[n-2].Done >= again.Size || seen[n-1].Done != again.Size || seen[n-1].Total != again.Size {
		t.Errorf("progress %v: want the upload stopped short, then the whole layer (%d bytes)", seen[max(0, len(seen)-2):], again.Size)
	}
	im, err := Resolve(ctx, reg.Addr+"/vm/big:2", WithInsecure())
	if err != nil || im.Digest != first.Digest || len(im.Layers) != 1 || im.Layers[0].Digest != first.Layer {
		t.Fatalf("resolved %+v, %v; want the first push's image", im, err)
	}
	// The stopped upload was cancelled: the registry keeps none of the
	// bytes it received (distribution leaves the empty hash state of the
	// upload's start behind, as for any cancelled upload).
	var kept int64
	filepath.WalkDir(filepath.Join(reg.Storage, "docker/registry/v2/repositories/vm/big/_uploads"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				kept += info.Size()
			}
		}
		return nil
	})
	if kept > 4096 {
		t.Errorf("the registry keeps %d bytes of the stopped upload", kept)
	}
}

func kindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

// Plain HTTP only with WithInsecure, even on loopback; missing tags,
// repositories and digests, and a damaged manifest, are said as such.
func TestRegistryErrors(t *testing.T) {
	isolate(t)
	reg := registrytest.Start(t, registrytest.Config{})
	ctx := context.Background()
	content := randomDisk(t, 4096)
	disk := Disk{Name: "d.raw", Content: bytes.NewReader(content), Size: int64(len(content))}

	_, err := Push(ctx, reg.Addr+"/vm/x:1", disk)
	if kindOf(err) != KindRegistry || !strings.Contains(err.Error(), "--insecure") {
		t.Errorf("plain HTTP without --insecure: %v", err)
	}
	pushed, err := Push(ctx, reg.Addr+"/vm/x:1", disk, WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ref  string
		kind Kind
		want string
	}{
		{reg.Addr + "/vm/x:2", KindNotFound, "no tag 2 in vm/x"},
		{reg.Addr + "/vm/nothing:1", KindNotFound, "vm/nothing"},
		{reg.Addr + "/vm/x@sha256:" + strings.Repeat("0", 64), KindNotFound, "no image with the digest sha256:000"},
		{reg.Addr + "/vm/x:bad tag", KindInvalid, "invalid image reference"},
		{"127.0.0.1:1/vm/x:1", KindRegistry, "refused the connection"},
	} {
		_, err := Resolve(ctx, tc.ref, WithInsecure())
		if kindOf(err) != tc.kind || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v (kind %v), want %v saying %q", tc.ref, err, kindOf(err), tc.kind, tc.want)
		}
	}
	if _, err := Push(ctx, reg.Addr+"/vm/x@"+pushed.Digest, disk, WithInsecure()); kindOf(err) != KindInvalid {
		t.Errorf("push to a digest: %v", err)
	}
	if _, err := Resolve(ctx, reg.Addr+"/vm/x:1", WithInsecure(), WithPlatform("amd64")); kindOf(err) != KindInvalid {
		t.Errorf("platform without OS: %v", err)
	}

	// The registry serves a damaged manifest for the digest asked.
	reg.Damage(t, pushed.Digest, func(b []byte) {
		// The last hex digit of the layer's digest: still a manifest, no
		// longer the one asked for.
		i := bytes.LastIndex(b, []byte(pushed.Layer)) + len(pushed.Layer) - 1
		if b[i] == '0' {
			b[i] = '1'
		} else {
			b[i] = '0'
		}
	})
	if _, err := Resolve(ctx, reg.Addr+"/vm/x@"+pushed.Digest, WithInsecure()); kindOf(err) != KindDigest || !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("damaged manifest: %v (kind %v)", err, kindOf(err))
	}
}

// Credentials come from the Docker configuration: without them, and with
// wrong ones, the registry's refusal is said as such.
func TestRegistryAuth(t *testing.T) {
	isolate(t)
	reg := registrytest.Start(t, registrytest.Config{Auth: true})
	ctx := context.Background()
	content := randomDisk(t, 4096)
	disk := Disk{Name: "d.raw", Content: bytes.NewReader(content), Size: int64(len(content))}

	_, err := Push(ctx, reg.Addr+"/vm/x:1", disk, WithInsecure())
	if kindOf(err) != KindAuth || !strings.Contains(err.Error(), "has no credentials") {
		t.Errorf("no credentials: %v", err)
	}
	t.Setenv("DOCKER_CONFIG", reg.DockerConfig(t, reg.User, "wrong"))
	_, err = Push(ctx, reg.Addr+"/vm/x:1", disk, WithInsecure())
	if kindOf(err) != KindAuth || !strings.Contains(err.Error(), "refused the login") {
		t.Errorf("wrong password: %v", err)
	}
	t.Setenv("DOCKER_CONFIG", reg.DockerConfig(t, reg.User, reg.Password))
	if _, err := Push(ctx, reg.Addr+"/vm/x:1", disk, WithInsecure()); err != nil {
		t.Fatal(err)
	}
	if _, _, got := pullDisk(t, reg.Addr+"/vm/x:1", WithInsecure()); !bytes.Equal(got, content) {
		t.Error("pulled disk differs")
	}
}

// A registry with a private CA is reached when the CA is trusted, and
// refused with a clear message when it is not.
func TestRegistryTLS(t *testing.T) {
	isolate(t)
	reg := registrytest.Start(t, registrytest.Config{TLS: true})
	ctx := context.Background()
	content := randomDisk(t, 4096)
	disk := Disk{Name: "d.raw", Content: bytes.NewReader(content), Size: int64(len(content))}
	_, err := Push(ctx, reg.Addr+"/vm/x:1", disk)
	if kindOf(err) != KindRegistry || !strings.Contains(err.Error(), "SSL_CERT_FILE") {
		t.Errorf("untrusted CA: %v", err)
	}
	if _, err := Push(ctx, reg.Addr+"/vm/x:1", disk, WithTransport(reg.Transport())); err != nil {
		t.Fatal(err)
	}
	if _, _, got := pullDisk(t, reg.Addr+"/vm/x:1", WithTransport(reg.Transport())); !bytes.Equal(got, content) {
		t.Error("pulled disk differs")
	}
}
