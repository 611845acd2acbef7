package qcow2

import (
	"bytes"
	"compress/flate"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/internal/inflate"
)

// puff is a plain deflate decoder (after zlib's contrib/puff) that records
// the longest back-reference distance: the one thing a one-shot inflate
// does not check and a streaming inflate with qemu's 4 KiB window
// (windowBits -12) would refuse.
type puff struct {
	in      []byte
	pos     int
	bitbuf  uint32
	bitcnt  uint
	out     []byte
	maxDist int
}

var errPuff = errors.New("bad deflate stream")

func (p *puff) bits(n uint) (uint32, error) {
	v := p.bitbuf
	for p.bitcnt < n {
		if p.pos >= len(p.in) {
			return 0, errPuff
		}
		v |= uint32(p.in[p.pos]) << p.bitcnt
		p.pos++
		p.bitcnt += 8
	}
	p.bitbuf = v >> n
	p.bitcnt -= n
	return v & (1<<n - 1), nil
}

type puffHuff struct {
	count  [16]int
	symbol []int
}

func newPuffHuff(lengths []int) *puffHuff {
	h := &puffHuff{symbol: make([]int, len(lengths))}
	for _, l := range lengths {
		h.count[l]++
	}
	var offs [16]int
	for l := 1; l < 15; l++ {
		offs[l+1] = offs[l] + h.count[l]
	}
	for s, l := range lengths {
		if l != 0 {
			h.symbol[offs[l]] = s
			offs[l]++
		}
	}
	return h
}

func (p *puff) decode(h *puffHuff) (int, error) {
	code, first, index := 0, 0, 0
	for l := 1; l < 16; l++ {
		b, err := p.bits(1)
		if err != nil {
			return 0, err
		}
		code |= int(b)
		count := h.count[l]
		if code-count < first {
			return h.symbol[index+(code-first)], nil
		}
		index += count
		first += count
		first <<= 1
		code <<= 1
	}
	return 0, errPuff
}

var (
	puffLenBase  = []int{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	puffLenExtra = []uint{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	puffDstBase  = []int{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	puffDstExtra = []uint{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
)

func (p *puff) codes(lit, dist *puffHuff) error {
	for {
		sym, err := p.decode(lit)
		if err != nil {
			return err
		}
		switch {
		case sym < 256:
			p.out = append(p.out, byte(sym))
		case sym == 256:
			return nil
		default:
			sym -= 257
			if sym >= 29 {
				return errPuff
			}
			e, err := p.bits(puffLenExtra[sym])
			if err != nil {
				return err
			}
			n := puffLenBase[sym] + int(e)
			ds, err := p.decode(dist)
			if err != nil || ds >= 30 {
				return errPuff
			}
			e, err = p.bits(puffDstExtra[ds])
			if err != nil {
				return err
			}
			d := puffDstBase[ds] + int(e)
			if d > len(p.out) {
				return errPuff
			}
			p.maxDist = max(p.maxDist, d)
			for range n {
				p.out = append(p.out, p.out[len(p.out)-d])
			}
		}
	}
}

// puffInflate decodes a whole raw deflate stream.
func puffInflate(in []byte) (out []byte, maxDist int, err error) {
	p := &puff{in: in}
	fixedLit := make([]int, 288)
	for i := range fixedLit {
		fixedLit[i] = map[bool]int{true: 8, false: 9}[i < 144 || i >= 280]
		if i >= 256 && i < 280 {
			fixedLit[i] = 7
		}
	}
	fixedDist := make([]int, 30)
	for i := range fixedDist {
		fixedDist[i] = 5
	}
	for {
		last, err := p.bits(1)
		if err != nil {
			return nil, 0, err
		}
		typ, err := p.bits(2)
		if err != nil {
			return nil, 0, err
		}
		switch typ {
		case 0:
			p.bitbuf, p.bitcnt = 0, 0
			if p.pos+4 > len(p.in) {
				return nil, 0, errPuff
			}
			n := int(p.in[p.pos]) | int(p.in[p.pos+1])<<8
			p.pos += 4
			if p.pos+n > len(p.in) {
				return nil, 0, errPuff
			}
			p.out = append(p.out, p.in[p.pos:p.pos+n]...)
			p.pos += n
		case 1:
			err = p.codes(newPuffHuff(fixedLit), newPuffHuff(fixedDist))
		case 2:
			err = p.dynamic()
		default:
			return nil, 0, errPuff
		}
		if err != nil {
			return nil, 0, err
		}
		if last == 1 {
			return p.out, p.maxDist, nil
		}
	}
}

func (p *puff) dynamic() error {
	hlit, err := p.bits(5)
	if err != nil {
		return err
	}
	hdist, _ := p.bits(5)
	hclen, err := p.bits(4)
	if err != nil {
		return err
	}
	order := []int{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
	lengths := make([]int, 19)
	for i := range int(hclen) + 4 {
		v, err := p.bits(3)
		if err != nil {
			return err
		}
		lengths[order[i]] = int(v)
	}
	lencode := newPuffHuff(lengths)
	nlen, ndist := int(hlit)+257, int(hdist)+1
	all := make([]int, 0, nlen+ndist)
	for len(all) < nlen+ndist {
		sym, err := p.decode(lencode)
		if err != nil {
			return err
		}
		if sym < 16 {
			all = append(all, sym)
			continue
		}
		var rep, val int
		switch sym {
		case 16:
			if len(all) == 0 {
				return errPuff
			}
			val = all[len(all)-1]
			e, err := p.bits(2)
			if err != nil {
				return err
			}
			rep = 3 + int(e)
		case 17:
			e, err := p.bits(3)
			if err != nil {
				return err
			}
			rep = 3 + int(e)
		default:
			e, err := p.bits(7)
			if err != nil {
				return err
			}
			rep = 11 + int(e)
		}
		for range rep {
			all = append(all, val)
		}
	}
	if len(all) > nlen+ndist {
		return errPuff
	}
	return p.codes(newPuffHuff(all[:nlen]), newPuffHuff(all[nlen:]))
}

// No deflate stream we store reaches back more than 4 KiB, even on data
// whose repeats lie 8 and 40 KiB apart (a 32 KiB window would take them),
// and each decodes to its cluster with our reader's inflate too.
func TestDeflateWindow(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// The checker sees what a 32 KiB window does with such data.
	{
		data := make([]byte, 64<<10)
		for i := range data[:8192] {
			data[i] = byte(rng.Uint32())
		}
		copy(data[8192:], data[:8192])
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, flate.DefaultCompression)
		w.Write(data)
		w.Close()
		out, maxDist, err := puffInflate(buf.Bytes())
		if err != nil || !bytes.Equal(out, data) || maxDist != 8192 {
			t.Fatalf("the checker: %v, longest distance %d in compress/flate's stream, want 8192", err, maxDist)
		}
	}
	text := cmpText(t, 2<<20)
	checked := 0
	for _, cs := range []int64{4 << 10, 64 << 10, 2 << 20} {
		c, err := newWrCompressor(cs, CompressionDeflate)
		if err != nil {
			t.Fatal(err)
		}
		cluster := make([]byte, cs)
		for round := range 8 {
			blk := make([]byte, 1000+rng.IntN(3000))
			for i := range blk {
				blk[i] = byte(rng.Uint32())
			}
			gap := []int{4097, 5000, 8192, 40 << 10}[round%4]
			copy(cluster, text[rng.IntN(len(text)-int(cs)+1):])
			for p := 0; p < len(cluster); p += gap {
				copy(cluster[p:], blk)
			}
			stored, err := c.compress(cluster)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(stored)) == cs {
				continue // stored plain
			}
			checked++
			out, maxDist, err := puffInflate(stored)
			if err != nil || !bytes.Equal(out, cluster) {
				t.Fatalf("cluster %d, round %d: the stream does not decode to the cluster (%v)", cs, round, err)
			}
			if maxDist > deflateWindow {
				t.Fatalf("cluster %d, round %d: a back-reference %d bytes back, beyond qemu's 4 KiB window", cs, round, maxDist)
			}
			got := make([]byte, cs)
			if err := inflate.Decode(got, stored); err != nil || !bytes.Equal(got, cluster) {
				t.Fatalf("cluster %d, round %d: inflate.Decode: %v", cs, round, err)
			}
		}
	}
	if checked < 20 {
		t.Errorf("only %d streams checked", checked)
	}
}

// A used encoder writes the same bytes as a fresh one: what a cluster
// compresses to must not depend on the cluster compressed before it by
// the same pooled encoder.
func TestCompressIndependentOfHistory(t *testing.T) {
	text := cmpText(t, 256<<10)
	for _, ctype := range []uint8{CompressionDeflate, CompressionZstd} {
		used, err := newWrCompressor(64<<10, ctype)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+64<<10 <= len(text); i += 16 << 10 {
			unit := text[i : i+64<<10]
			fresh, _ := newWrCompressor(64<<10, ctype)
			want, err := fresh.compress(unit)
			if err != nil {
				t.Fatal(err)
			}
			got, err := used.compress(unit)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("type %d, offset %d: a used encoder wrote other bytes than a fresh one", ctype, i)
			}
		}
	}
}

func TestLooksRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	for _, tt := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"random 64K", random(64 << 10), true},
		{"random 2M", random(2 << 20), true},
		{"random 4K: too small to tell", random(4 << 10), false},
		{"text", cmpText(t, 64<<10), false},
		{"zeros", make([]byte, 64<<10), false},
		{"random half, zeros half", append(random(32<<10), make([]byte, 32<<10)...), false},
		{"random 7 bits", func() []byte {
			b := random(64 << 10)
			for i := range b {
				b[i] &= 0x7f
			}
			return b
		}(), false},
	} {
		if got := looksRandom(tt.b); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
