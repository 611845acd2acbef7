package oci

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Only tar layers that come from the registry itself, with a sha256
// digest, are taken; a manifest that sends us elsewhere, or that is no
// image of layers, is refused before a byte of a layer is fetched.
func TestTarLayers(t *testing.T) {
	digest := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	layer := func(mt types.MediaType) v1.Descriptor { return v1.Descriptor{MediaType: mt, Size: 10, Digest: digest} }
	many := make([]v1.Descriptor, maxLayers+1)
	for i := range many {
		many[i] = layer(types.OCILayer)
	}
	for _, tc := range []struct {
		name   string
		layers []v1.Descriptor
		want   []string // compressions; nil for a refusal
		phrase string
	}{
		{"oci and docker, plain, gzip and zstd", []v1.Descriptor{layer(types.OCIUncompressedLayer), layer(types.DockerLayer), layer(types.OCILayerZStd), layer(types.DockerUncompressedLayer), layer(types.OCILayer)},
			[]string{"", "gzip", "zstd", "", "gzip"}, ""},
		{"no layers", nil, nil, "no layers"},
		{"too many", many, nil, "129 layers"},
		{"foreign", []v1.Descriptor{{MediaType: types.DockerForeignLayer, Size: 10, Digest: digest, URLs: []string{"http://169.254.169.254/latest"}}}, nil, "foreign layer"},
		{"sha512", []v1.Descriptor{{MediaType: types.OCILayer, Size: 10, Digest: v1.Hash{Algorithm: "sha512", Hex: strings.Repeat("ab", 64)}}}, nil, "verifies sha256"},
		{"negative size", []v1.Descriptor{{MediaType: types.OCILayer, Size: -1, Digest: digest}}, nil, "negative size"},
		{"not a tar", []v1.Descriptor{layer("application/vnd.cncf.helm.chart.content.v1.tar+gzip")}, nil, "not a tar layer"},
	} {
		layers, err := tarLayers("oci://r/x:1", &v1.Manifest{Layers: tc.layers})
		if tc.want == nil {
			var e *Error
			if !errors.As(err, &e) || e.Kind != KindNotDisk || !strings.Contains(err.Error(), tc.phrase) {
				t.Errorf("%s: %v, want a refusal saying %q", tc.name, err, tc.phrase)
			}
			continue
		}
		if err != nil || len(layers) != len(tc.want) {
			t.Fatalf("%s: %v %v", tc.name, layers, err)
		}
		for i, l := range layers {
			if l.Compression != tc.want[i] || l.Digest != digest.String() || l.Size != 10 {
				t.Errorf("%s: layer %d %+v, want compression %q", tc.name, i, l, tc.want[i])
			}
		}
	}
}

func TestBlobRedirects(t *testing.T) {
	from, _ := http.NewRequest(http.MethodGet, "https://registry.example.org/v2/r/blobs/sha256:00", nil)
	for _, c := range []struct {
		to string
		ok bool
	}{
		{"https://registry.example.org/other", true},
		{"https://storage.example.net/blob?sig=1", true},
		{"https://203.0.113.7/blob", true},
		{"http://169.254.169.254/latest/meta-data/", false},
		{"https://127.0.0.1:5000/blob", false},
		{"https://10.1.2.3/blob", false},
		{"https://192.168.0.1/blob", false},
		{"https://[::1]/blob", false},
		{"https://[fe80::1%25eth0]/blob", false},
		{"https://[::ffff:10.0.0.1]/blob", false},
		{"https://0.0.0.0/blob", false},
		{"https://127.1/blob", false},
		{"https://0x7f.0.0.1/blob", false},
		{"https://2130706433/blob", false},
		{"https://cafe.example/blob", true},
		{"https://cafe/blob", true},
		{"https://0xcafe/blob", false},
		{"https://1.2.3.4.5/blob", true}, // no address: a name
	} {
		to, err := http.NewRequest(http.MethodGet, c.to, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkBlobRedirect(to, []*http.Request{from}); (err == nil) != c.ok {
			t.Errorf("redirect to %s: %v, want allowed %v", c.to, err, c.ok)
		}
	}
}
