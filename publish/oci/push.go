package oci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Disk is a disk image to push.
type Disk struct {
	Name    string      // its file name in the layer: /disk/NAME
	Content io.ReaderAt // read from 0 to Size, once per upload attempt
	Size    int64
}

// Pushed says where an image went.
type Pushed struct {
	Reference string // REGISTRY/REPOSITORY:TAG, as pushed
	Digest    string // the manifest's digest: sha256:...
	Layer     string // the layer's digest
	Size      int64  // the layer's size in bytes
	// LayerExisted: the registry had the layer already (the same disk,
	// name and time pushed before to this repository), so the rest of it
	// was not sent.
	LayerExisted bool
}

// Pinned is the reference by digest, REGISTRY/REPOSITORY@sha256:..., which
// names exactly this image whatever the tag is moved to later.
func (p *Pushed) Pinned() string {
	ref, err := name.ParseReference(p.Reference)
	if err != nil {
		return p.Reference + "@" + p.Digest
	}
	return ref.Context().Name() + "@" + p.Digest
}

// Push publishes disk to ref (REGISTRY/REPOSITORY[:TAG], :latest when no
// tag is given) as a KubeVirt containerDisk: an OCI image whose one layer
// is an uncompressed tar of /disk/ and /disk/NAME. The layer is streamed
// from disk.Content and hashed on the way; then its configuration and the
// manifest follow, and the tag is set. Errors are *Error.
func Push(ctx context.Context, ref string, disk Disk, opts ...Option) (*Pushed, error) {
	o := newOptions(opts)
	platform, err := parsePlatform(o.platform)
	if err != nil {
		return nil, &Error{Kind: KindInvalid, Ref: ref, Msg: err.Error(), Err: err}
	}
	if err := CheckDiskName(disk.Name); err != nil {
		return nil, &Error{Kind: KindInvalid, Ref: ref, Msg: fmt.Sprintf("Cannot push %s: %v", disk.Name, err), Err: err}
	}
	s, err := o.session(ctx, ref)
	if err != nil {
		return nil, err
	}
	if _, ok := s.ref.(name.Tag); !ok {
		return nil, &Error{Kind: KindInvalid, Ref: ref, Msg: fmt.Sprintf("Cannot push to %s: push to a tag (REGISTRY/REPOSITORY:TAG); the digest is what the registry computes", ref)}
	}
	created := o.created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	created = created.UTC()
	layer, err := newDiskLayer(disk, created, o.progress)
	if err != nil {
		return nil, &Error{Kind: KindInvalid, Ref: ref, Msg: fmt.Sprintf("Cannot push %s: %v", disk.Name, err), Err: err}
	}

	pusher, err := remote.NewPusher(s.remote(ctx)...)
	if err != nil {
		return nil, s.fail(err, "Failed to push to")
	}
	repo := s.ref.Context()
	existed, err := s.uploadLayer(ctx, layer)
	if err != nil {
		return nil, s.fail(err, fmt.Sprintf("Failed to push the disk %s to", disk.Name))
	}
	layerDigest, err := layer.Digest()
	if err != nil { // the upload ended without reading the whole layer
		return nil, s.fail(err, fmt.Sprintf("Failed to push the disk %s to", disk.Name))
	}

	config, err := json.Marshal(imageConfig(platform, created, layerDigest))
	if err != nil {
		return nil, s.fail(err, "Failed to push to")
	}
	configLayer := static.NewLayer(config, types.OCIConfigJSON)
	if err := pusher.Upload(ctx, repo, configLayer); err != nil {
		return nil, s.fail(err, "Failed to push the image configuration to")
	}
	configDigest, _ := configLayer.Digest()

	m := manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(config)), Digest: configDigest},
		Layers:        []v1.Descriptor{{MediaType: LayerMediaType, Size: layer.size, Digest: layerDigest}},
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, s.fail(err, "Failed to push to")
	}
	if err := pusher.Put(ctx, s.ref, rawManifest{raw: raw, mediaType: m.MediaType}); err != nil {
		return nil, s.fail(err, "Failed to push the manifest to")
	}
	sum := sha256.Sum256(raw)
	return &Pushed{Reference: s.ref.Name(), Digest: "sha256:" + hex.EncodeToString(sum[:]), Layer: layerDigest.String(), Size: layer.size, LayerExisted: existed}, nil
}

// manifest is the OCI image manifest (image-spec manifest.md) with its
// fields in the spec's order; it is marshalled once and pushed as written,
// so its digest is the one computed here.
type manifest struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     types.MediaType `json:"mediaType"`
	Config        v1.Descriptor   `json:"config"`
	Layers        []v1.Descriptor `json:"layers"`
}

// imageConfig is the image's configuration (image-spec config.md): the
// platform, the one timestamp, and the layer (its diff ID is its digest,
// as it is not compressed). There is nothing to run: a containerDisk is
// only ever read.
func imageConfig(p *v1.Platform, created time.Time, layer v1.Hash) v1.ConfigFile {
	return v1.ConfigFile{
		Architecture: p.Architecture,
		OS:           p.OS,
		Variant:      p.Variant,
		OSVersion:    p.OSVersion,
		Created:      v1.Time{Time: created},
		RootFS:       v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{layer}},
	}
}

// rawManifest is a manifest to put as it is.
type rawManifest struct {
	raw       []byte
	mediaType types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mediaType, nil }
