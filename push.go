package genvm

import (
	"cmp"
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ucphhpc/gen-vm-image-go/internal/safefile"
	"github.com/ucphhpc/gen-vm-image-go/publish/oci"
	"github.com/ucphhpc/gen-vm-image-go/size"
)

// PushSpec describes a push: an image file, and where it goes as a KubeVirt
// containerDisk.
type PushSpec struct {
	File string // a raw or qcow2 image: the formats KubeVirt reads
	// Reference is REGISTRY/REPOSITORY[:TAG] (:latest without a tag; the
	// oci:// prefix may be kept).
	Reference string
	// Platform is what the image declares, OS/ARCH[/VARIANT]: the nodes
	// that run it must match (default oci.DefaultPlatform, linux/amd64).
	Platform string
	// Created is the image's one timestamp, of its files and its
	// configuration; the zero time is the Unix epoch. The same file, name,
	// platform and time always give the same image digest.
	Created time.Time
}

// Pushed says where an image went.
type Pushed struct {
	Reference string // REGISTRY/REPOSITORY:TAG
	// Digest is the manifest's digest, sha256:...: REGISTRY/REPOSITORY@DIGEST
	// (Pinned) names exactly this image, wherever the tag moves later.
	Digest string
}

// Pinned is the reference by digest.
func (p *Pushed) Pinned() string {
	return (&oci.Pushed{Reference: p.Reference, Digest: p.Digest}).Pinned()
}

// PushResult says what Push did. It is returned on failure too, with the
// messages gathered until then.
type PushResult struct {
	Pushed   *Pushed // nil unless the push succeeded
	Messages []string
}

// kubeVirtFormats are the disk formats a containerDisk may hold: those
// KubeVirt reads (its user guide, "containerDisk").
var kubeVirtFormats = []string{"raw", "qcow2"}

// Push publishes the image spec.File to a registry as a KubeVirt
// containerDisk: an OCI image whose one layer holds /disk/FILE, owned by
// 107:107 and read-only, streamed from the file (never copied) and hashed
// on the way. The file is inspected first, as an input is: only a raw or
// qcow2 image that refers to no other file is pushed.
func Push(ctx context.Context, spec PushSpec, opts ...Option) (*PushResult, error) {
	o := newOptions(opts)
	res := &PushResult{}
	say := func(format string, args ...any) { res.Messages = append(res.Messages, sprintf(format, args...)) }
	pushed, err := push(ctx, spec, o, filepath.Base(spec.File), say)
	res.Pushed = pushed
	return res, err
}

func push(ctx context.Context, spec PushSpec, o *options, image string, say func(string, ...any)) (*Pushed, error) {
	if spec.File == "" {
		return nil, newError(CodeMissingAttribute, nil, "Missing attribute: the image file to push")
	}
	if err := checkPushReference(spec.Reference); err != nil {
		return nil, err
	}
	if err := checkPlatform(spec.Platform); err != nil {
		return nil, err
	}
	path := spec.File
	f, err := safefile.OpenInput(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, newError(CodePathNotFound, err, "Path not found: %s - error: the image to push does not exist", path)
	case errors.Is(err, safefile.ErrNotRegular):
		return nil, newError(CodeLoadFailed, err, "Failed to load path: %s - error: not a regular file", path)
	case err != nil:
		return nil, newError(CodeLoadFailed, err, "Failed to load path: %s - error: %v", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, newError(CodeLoadFailed, err, "Failed to load path: %s - error: %v", path, err)
	}
	if st.Size() == 0 {
		return nil, newError(CodeLoadFailed, nil, "Failed to load path: %s - error: the file is empty (0 bytes): it is not a disk image", path)
	}
	format, report, err := detectFormat(f, st.Size(), "")
	if err != nil {
		return nil, err
	}
	for _, note := range report.Notes {
		say("Inspected %s: %s", path, note)
	}
	if !slices.Contains(kubeVirtFormats, format) {
		return nil, newError(CodeInvalidAttribute, nil, "Cannot push %s as a containerDisk: it is a %s image, and KubeVirt reads %s; convert it first (gen-vm-image convert -O qcow2 %s OUT.qcow2)",
			path, format, strings.Join(kubeVirtFormats, " and "), path)
	}
	opts := append(o.registryOptions(image, "push"), oci.WithPlatform(cmp.Or(spec.Platform, oci.DefaultPlatform)), oci.WithCreated(spec.Created))
	p, err := oci.Push(ctx, spec.Reference, oci.Disk{Name: filepath.Base(path), Content: f, Size: st.Size()}, opts...)
	if err != nil {
		return nil, registryError(ctx, err)
	}
	sent := ""
	if p.LayerExisted {
		sent = ", which the registry had already: not sent again"
	}
	say("Pushed %s (%s, %s) to %s%s as a containerDisk: %s (layer %s, %s%s)", path, format, size.Format(st.Size()), oci.Scheme, p.Reference, p.Digest, p.Layer, size.Format(p.Size), sent)
	return &Pushed{Reference: p.Reference, Digest: p.Digest}, nil
}

// checkPlatform refuses a platform that does not parse.
func checkPlatform(p string) error {
	if p == "" {
		return nil
	}
	if err := oci.CheckPlatform(p); err != nil {
		return newError(CodeInvalidAttribute, err, "Invalid platform: %v", err)
	}
	return nil
}

// checkPushReference refuses, as an invalid attribute, a reference that
// does not parse or that names a digest.
func checkPushReference(ref string) error {
	if ref == "" {
		return newError(CodeMissingAttribute, nil, "Missing attribute: the reference to push to (REGISTRY/REPOSITORY[:TAG])")
	}
	r, err := oci.ParseReference(ref)
	if err != nil {
		return newError(CodeInvalidAttribute, err, "Cannot push to %s: %v", ref, err)
	}
	if strings.Contains(r.String(), "@") {
		return newError(CodeInvalidAttribute, nil, "Cannot push to %s: push to a tag (REGISTRY/REPOSITORY:TAG); the digest is what the registry computes", ref)
	}
	return nil
}
