package fetch

import (
	"bytes"
	"context"
	"testing"
)

// TestImageDigestStreamingAndParallelAgree: the digest computed while a
// copy is written, in pieces of any size, is the one a later check
// computes on every core, and it changes with any byte.
func TestImageDigestStreamingAndParallelAgree(t *testing.T) {
	data := make([]byte, 5*digestBlock+12345)
	copy(data[100:], payload(5000))                    // data in the first block
	copy(data[2*digestBlock-10:], []byte("straddles")) // across a block boundary
	data[len(data)-1] = 1                              // the short last block
	for _, piece := range []int{1 << 20, 4096, 777, len(data)} {
		d := newBlockDigester()
		for p := data; len(p) > 0; {
			n := min(piece, len(p))
			d.Write(p[:n])
			p = p[n:]
		}
		streamed := d.sum()
		checked, err := imageDigestOf(context.Background(), bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		if streamed != checked {
			t.Fatalf("pieces of %d: streamed %s, checked %s", piece, streamed, checked)
		}
	}
	before, _ := imageDigestOf(context.Background(), bytes.NewReader(data), int64(len(data)))
	data[3*digestBlock+5] = 9 // in an all-zero block
	after, _ := imageDigestOf(context.Background(), bytes.NewReader(data), int64(len(data)))
	if before == after {
		t.Error("a byte changed in a block of zeros did not change the digest")
	}
}
