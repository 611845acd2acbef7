package oci

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// uploadLayer uploads l unless the registry has it already. The upload
// starts at once, its digest computed as it streams; meanwhile the layer
// is hashed a second time on the side, which is quicker than any registry
// takes it in, and once that digest is known the registry is asked for the
// blob. If it has it (the same disk pushed before: outputs are
// reproducible, so a nightly rebuild pushes the same bytes), the upload is
// stopped there and cancelled, so that the registry keeps nothing of it.
//
// The upload is the distribution spec's streamed one (POST, one PATCH of
// the whole layer, PUT with the digest), done here rather than by
// go-containerregistry's pusher, which cannot cancel an upload it started.
func (s *session) uploadLayer(ctx context.Context, l *diskLayer) (existed bool, err error) {
	client, err := s.blobClient(ctx, transport.PushScope)
	if err != nil {
		return false, err
	}
	up, err := s.startUpload(ctx, client)
	if err != nil {
		return false, err
	}
	body := &stoppableReader{r: l.open()}
	sent := make(chan error, 1)
	go func() { sent <- up.send(ctx, body) }()

	hashCtx, stopHash := context.WithCancel(ctx)
	defer stopHash()
	hashed := make(chan v1.Hash, 1)
	go func() {
		if h, err := l.hash(hashCtx); err == nil {
			hashed <- h
		}
		close(hashed)
	}()

	var sendErr error
	select {
	case sendErr = <-sent:
	case h, ok := <-hashed:
		if ok && s.hasBlob(ctx, client, h) {
			// The body ends there, and the registry answers the PATCH
			// as any: the upload is then cancelled in the state it
			// says, which a PATCH cut off mid-way would not leave.
			body.stop.Store(true)
			<-sent
			up.cancel(ctx)
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			l.setDigest(h)
			if l.progress != nil { // the whole layer is there
				l.progress(Progress{Done: l.size, Total: l.size})
			}
			return true, nil
		}
		sendErr = <-sent
	}
	if sendErr != nil {
		up.cancel(ctx)
		return false, sendErr
	}
	digest, err := l.Digest()
	if err != nil { // the body was not read to its end
		up.cancel(ctx)
		return false, err
	}
	return false, up.commit(ctx, digest)
}

// hasBlob reports whether the session's repository has the blob of digest
// h. Any doubt (an error, an answer other than 200) is a no: the upload
// goes on.
func (s *session) hasBlob(ctx context.Context, client *http.Client, h v1.Hash) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, s.blobURL(h.String()), nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// upload is a blob upload session: where its next request goes.
type upload struct {
	client   *http.Client
	location *url.URL
}

// startUpload opens an upload session in the session's repository.
func (s *session) startUpload(ctx context.Context, client *http.Client) (*upload, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.blobURL("uploads/"), nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	if err := transport.CheckError(resp, http.StatusAccepted); err != nil {
		return nil, err
	}
	loc, err := resp.Location()
	if err != nil {
		return nil, fmt.Errorf("the registry started an upload without saying where it goes: %w", err)
	}
	return &upload{client: client, location: loc}, nil
}

// stoppableReader ends, at its next read, once stop is set.
type stoppableReader struct {
	r    io.Reader
	stop atomic.Bool
}

func (s *stoppableReader) Read(p []byte) (int, error) {
	if s.stop.Load() {
		return 0, io.EOF
	}
	return s.r.Read(p)
}

// send streams the layer in one PATCH, chunked, so that it can end before
// the layer's end and still be a request the registry takes.
func (u *upload) send(ctx context.Context, body io.Reader) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, u.location.String(), io.NopCloser(body))
	if err != nil {
		return err
	}
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := u.client.Do(req)
	if err != nil {
		return err
	}
	defer drain(resp)
	if err := transport.CheckError(resp, http.StatusNoContent, http.StatusAccepted, http.StatusCreated); err != nil {
		return err
	}
	if loc, err := resp.Location(); err == nil {
		u.location = loc
	}
	return nil
}

// commit ends the upload: the registry checks the digest of what it
// received and keeps the blob under it.
func (u *upload) commit(ctx context.Context, digest v1.Hash) error {
	commit := *u.location
	q := commit.Query()
	q.Set("digest", digest.String())
	commit.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, commit.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := u.client.Do(req)
	if err != nil {
		return err
	}
	defer drain(resp)
	return transport.CheckError(resp, http.StatusCreated)
}

// cancel asks the registry to drop the upload and what it received of it,
// even when ctx is done (an interrupted push cleans up too), for a few
// seconds at most; a registry that does not drop it expires it.
func (u *upload) cancel(ctx context.Context) {
	ctx, stop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u.location.String(), nil)
	if err != nil {
		return
	}
	if resp, err := u.client.Do(req); err == nil {
		drain(resp)
	}
}

// drain reads what is left of a small answer, so that its connection is
// reused, and closes it.
func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}
