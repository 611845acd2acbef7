package arch

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/checksum"
)

// referenceDir holds the Python tool's example and test architecture files.
func referenceDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("..", "..", "shared", "reference")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("reference files absent (%v): test skipped", err)
	}
	return dir
}

func TestReferenceAdvanced(t *testing.T) {
	path := filepath.Join(referenceDir(t), "tests_res_advanced_architecture.yml")
	a, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if a.Owner != "the-owner-name" {
		t.Errorf("Owner = %q", a.Owner)
	}
	// REFERENCE.md: what `multiple` must produce from this file.
	want := []string{
		"test-image-1-9.4.qcow2", "test-image-2-9.4.raw", "test-image-3-8.4.qcow2", "test-image-4-8.4.raw",
		"test-image-5-9.4.raw", "input-path-image-12.qcow2", "convert_input_image_format-12.raw",
		"non-version-image.raw", "image-with-output-path-9.4.qcow2",
	}
	var got []string
	for _, img := range a.Images {
		got = append(got, OutputName(img.Name, img.Version, img.Format))
	}
	if !slices.Equal(got, want) {
		t.Errorf("output names\n got %v\nwant %v", got, want)
	}
	in := a.Images[5].Input
	if in == nil || in.Path != "tests/res/test.qcow2" || in.Format != "qcow2" || in.URL != "" || in.Line != 49 {
		t.Errorf("input_path_image input = %+v", in)
	}
	if a.Images[0].Key != "image-1" || a.Images[0].Line != 19 || a.Images[0].SizeBytes != 10<<30 {
		t.Errorf("image-1 = %+v", a.Images[0])
	}
	wantWarn := []string{path + `:69: images.image_with_output_path: unknown key "output" ignored`}
	if !slices.Equal(a.Warnings, wantWarn) {
		t.Errorf("Warnings = %q; want %q", a.Warnings, wantWarn)
	}
}

func TestReferenceExamples(t *testing.T) {
	dir := referenceDir(t)
	rocky := "https://download.rockylinux.org/pub/rocky/9/images/x86_64/Rocky-9-GenericCloud-Base.latest.x86_64.qcow2"
	tests := []struct {
		file string
		want Image
	}{
		{"tests_res_basic_architecture.yml", Image{Key: "image", Name: "test-image", Size: "10G", SizeBytes: 10 << 30, Version: "9.4", Format: "qcow2", Line: 19}},
		{"examples_architecture.yml", Image{Key: "image-1", Name: "Rocky", Size: "120G", SizeBytes: 120 << 30, Version: "9.4", Format: "qcow2", Line: 3,
			Input: &Input{Path: "/path/to/rocky.qcow2", Format: "qcow2", Line: 8}}},
		{"examples_download-cloud-image-example.yml", Image{Key: "image-1", Name: "rocky", Size: "120G", SizeBytes: 120 << 30, Version: "9.4", Format: "qcow2", Line: 3,
			Input: &Input{URL: rocky, URLs: []string{rocky}, Format: "qcow2", Line: 8}}},
		{"examples_download-cloud-image-checksum-example.yml", Image{Key: "image-1", Name: "rocky", Size: "120G", SizeBytes: 120 << 30, Version: "9.4", Format: "qcow2", Line: 3,
			Input: &Input{URL: rocky, URLs: []string{rocky}, Format: "qcow2", Line: 8,
				Checksum: &Checksum{Spec: checksum.Spec{Type: "sha256", Value: "39277948d53a10f1087454a1e0ed1c9bb48b48f6a4ddbf5113adc36f70be6730", BufferSize: 65536}, Line: 11}}}},
	}
	for _, tt := range tests {
		a, err := Load(filepath.Join(dir, tt.file))
		if err != nil {
			t.Errorf("%s: %v", tt.file, err)
			continue
		}
		if a.Owner != "the-owner-name" || len(a.Images) != 1 || len(a.Warnings) != 0 {
			t.Errorf("%s: %+v", tt.file, a)
			continue
		}
		if !reflect.DeepEqual(a.Images[0], tt.want) {
			t.Errorf("%s:\n got %s\nwant %s", tt.file, dump(a.Images[0]), dump(tt.want))
		}
	}
}

func dump(img Image) string {
	s := strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(
		strings.Join([]string{img.Key, img.Name, img.Size, img.Version, img.Format}, " "), "\n", " "), "  ", " "))
	if img.Input != nil {
		in := *img.Input
		s += " input{" + in.Path + " " + in.URL + " " + strings.Join(in.URLs, ",") + " " + in.Format + "}"
		if in.Checksum != nil {
			s += " checksum{" + in.Checksum.Type + " " + in.Checksum.Value + "}"
		}
	}
	return s
}

// image wraps an image body so its first line is line 4.
func image(body string) string {
	return "owner: o\nimages:\n  img:\n" + body
}

func TestVersionAsWritten(t *testing.T) {
	tests := []struct{ yaml, want string }{
		{"9.4", "9.4"},
		{"12", "12"},
		{"08", "08"},
		{"9.40", "9.40"},
		{"012", "012"},
		{"0x1F", "0x1F"},
		{"1e3", "1e3"},
		{"0", "0"},
		{"2024-01-01", "2024-01-01"},
		{`"1.0"`, "1.0"},
		{"'7'", "7"},
		{"rocky-9", "rocky-9"},
		{"", ""},
		{"~", ""},
		{"null", ""},
		{`""`, ""},
	}
	for _, tt := range tests {
		a, err := Parse([]byte(image("    name: n\n    size: 1G\n    version: "+tt.yaml+"\n")), "v.yml")
		if err != nil {
			t.Errorf("version: %s: %v", tt.yaml, err)
			continue
		}
		if got := a.Images[0].Version; got != tt.want {
			t.Errorf("version: %s gives %q; want %q", tt.yaml, got, tt.want)
		}
	}
}

func TestParseValues(t *testing.T) {
	tests := []struct {
		name, yaml string
		check      func(*Architecture) bool
	}{
		{"format default", image("    name: n\n    size: 1G\n"),
			func(a *Architecture) bool { return a.Images[0].Format == "qcow2" }},
		{"format null is the default", image("    name: n\n    size: 1G\n    format:\n"),
			func(a *Architecture) bool { return a.Images[0].Format == "qcow2" }},
		{"numeric name and size kept as written", image("    name: 2024\n    size: 512\n"),
			func(a *Architecture) bool { return a.Images[0].Name == "2024" && a.Images[0].SizeBytes == 512 }},
		{"file order kept", "owner: o\nimages:\n  z: {name: z, size: 1G}\n  a: {name: a, size: 1G}\n  m: {name: m, size: 1G}\n",
			func(a *Architecture) bool {
				return a.Images[0].Key == "z" && a.Images[1].Key == "a" && a.Images[2].Key == "m"
			}},
		{"url mirrors", image("    name: n\n    size: 1G\n    input:\n      url:\n        - https://a.example/x.qcow2\n        - http://b.example/x.qcow2\n"),
			func(a *Architecture) bool {
				in := a.Images[0].Input
				return in.URL == "https://a.example/x.qcow2" && slices.Equal(in.URLs, []string{"https://a.example/x.qcow2", "http://b.example/x.qcow2"})
			}},
		{"oci input, its prefix dropped", image("    name: n\n    size: 1G\n    input:\n      oci: oci://registry.example:5000/vm/ubuntu:22.04\n"),
			func(a *Architecture) bool {
				in := a.Images[0].Input
				return in.OCI == "registry.example:5000/vm/ubuntu:22.04" && in.Path == "" && in.URL == ""
			}},
		{"checksum file without type", image("    name: n\n    size: 1G\n    input:\n      url: https://a.example/x.qcow2\n      checksum:\n        file: https://a.example/SHA256SUMS\n        signature: https://a.example/SHA256SUMS.gpg\n        key: keys/a.asc\n"),
			func(a *Architecture) bool {
				c := a.Images[0].Input.Checksum
				return c.File == "https://a.example/SHA256SUMS" && c.Signature == "https://a.example/SHA256SUMS.gpg" && c.Key == "keys/a.asc" && c.Type == "" && c.Value == ""
			}},
		{"clear-signed checksum file: key without signature", image("    name: n\n    size: 1G\n    input:\n      url: https://a.example/x.qcow2\n      checksum: {file: https://a.example/CHECKSUM, key: keys/a.asc}\n"),
			func(a *Architecture) bool {
				c := a.Images[0].Input.Checksum
				return c.File == "https://a.example/CHECKSUM" && c.Key == "keys/a.asc" && c.Signature == ""
			}},
		{"checksum numbers", image("    name: n\n    size: 1G\n    input:\n      path: x\n      checksum:\n        type: SHA-256\n        value: \" 39277948D53A10F1087454A1E0ED1C9BB48B48F6A4DDBF5113ADC36F70BE6730 \"\n        buffer_size: 0x1000\n        read_bytes: 1000\n"),
			func(a *Architecture) bool {
				c := a.Images[0].Input.Checksum
				return c.Type == "SHA-256" && c.Value == "39277948D53A10F1087454A1E0ED1C9BB48B48F6A4DDBF5113ADC36F70BE6730" && c.BufferSize == 4096 && c.ReadBytes == 1000
			}},
		{"md5 value YAML reads as a number", image("    name: n\n    size: 1G\n    input:\n      path: x\n      checksum: {type: md5, value: 12345678901234567890123456789012}\n"),
			func(a *Architecture) bool {
				return a.Images[0].Input.Checksum.Value == "12345678901234567890123456789012"
			}},
		{"merge keys", "owner: o\nimages:\n  base: &base {name: b, size: 1G, format: raw}\n  other:\n    <<: *base\n    name: other\n",
			func(a *Architecture) bool {
				o := a.Images[1]
				return o.Name == "other" && o.Size == "1G" && o.Format == "raw"
			}},
		{"aliases", "owner: &o me\nimages:\n  a: {name: *o, size: &s 2G}\n  b: {name: b, size: *s}\n",
			func(a *Architecture) bool {
				return a.Owner == "me" && a.Images[0].Name == "me" && a.Images[1].SizeBytes == 2<<30
			}},
		{"same name, other version or format", "owner: o\nimages:\n  a: {name: n, size: 1G}\n  b: {name: n, size: 1G, version: 2}\n  c: {name: n, size: 1G, format: raw}\n",
			func(a *Architecture) bool { return len(a.Images) == 3 }},
	}
	for _, tt := range tests {
		a, err := Parse([]byte(tt.yaml), "t.yml")
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !tt.check(a) {
			t.Errorf("%s: unexpected result %+v", tt.name, a)
		}
	}
}

func TestWarnings(t *testing.T) {
	src := "owner: o\nimages:\n  img:\n    name: n\n    size: 1G\n    output: x\n    input:\n      path: p\n      mirror: m\n      checksum: {type: md5, value: d41d8cd98f00b204e9800998ecf8427e, algo: x}\n  blank:\n    name: b\n    size: 1G\n    input:\ncomment: hi\n"
	a, err := Parse([]byte(src), "w.yml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`w.yml:6: images.img: unknown key "output" ignored`,
		`w.yml:9: images.img.input: unknown key "mirror" ignored`,
		`w.yml:10: images.img.input.checksum: unknown key "algo" ignored`,
		`w.yml:14: images.blank.input: is empty: the image is built blank`,
		`w.yml:15: unknown key "comment" ignored`,
	}
	if !slices.Equal(a.Warnings, want) {
		t.Errorf("Warnings\n got %q\nwant %q", a.Warnings, want)
	}
	if a.Images[1].Input != nil {
		t.Errorf("empty input: %+v", a.Images[1].Input)
	}
}

func TestWithFormats(t *testing.T) {
	src := image("    name: n\n    size: 1G\n    format: qcow3\n    input: {path: p, format: vmdk}\n")
	if _, err := Parse([]byte(src), "f.yml"); err != nil {
		t.Errorf("without WithOutputFormats and WithInputFormats: %v", err)
	}
	known := []string{"qcow2", "raw", "vmdk"}
	readable := []string{"qcow2", "raw"}
	// An input may declare any known format, readable or not (it is
	// refused later, with the reason); an image must be in one we write.
	_, err := Parse([]byte(src), "f.yml", WithOutputFormats("qcow2", "raw"), WithInputFormats(known, readable))
	wantProblems(t, err, []Problem{{Line: 6, Column: 13, Path: "images.img.format", Msg: `"qcow3" is not a format this version writes; use one of qcow2, raw`}})

	src = image("    name: n\n    size: 1G\n    format: vmdk\n    input: {path: p, format: qcow3}\n")
	_, err = Parse([]byte(src), "f.yml", WithOutputFormats("qcow2", "raw"), WithInputFormats(known, readable))
	wantProblems(t, err, []Problem{
		{Line: 6, Column: 13, Path: "images.img.format", Msg: `"vmdk" is not a format this version writes; use one of qcow2, raw`},
		{Line: 7, Column: 30, Path: "images.img.input.format", Msg: `unknown format "qcow3"; this version reads qcow2, raw`},
	})
}

func wantProblems(t *testing.T, err error, want []Problem) {
	t.Helper()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T); want a *ValidationError", err, err)
	}
	if !reflect.DeepEqual(ve.Problems, want) {
		t.Errorf("problems\n got %+v\nwant %+v", ve.Problems, want)
	}
}

// TestProblems: one bad input each, with the line, the path, the message
// and the kind of the one problem it must give.
func TestProblems(t *testing.T) {
	const nameSize = "    name: n\n    size: 1G\n"
	tests := []struct {
		name, yaml string
		want       Problem
	}{
		{"top level a list", "- owner\n", Problem{1, 1, "", "the file must be a mapping with owner and images, got a list", Invalid}},
		{"top level a scalar", "hello\n", Problem{1, 1, "", `the file must be a mapping with owner and images, got a string ("hello")`, Invalid}},
		{"missing owner", "images:\n  img: {name: n, size: 1G}\n", Problem{1, 1, "", `missing required key "owner"`, Missing}},
		{"empty owner", "owner: ''\nimages:\n  img: {name: n, size: 1G}\n", Problem{1, 8, "owner", "is empty", Missing}},
		{"null owner", "owner:\nimages:\n  img: {name: n, size: 1G}\n", Problem{1, 7, "owner", "has no value", Missing}},
		{"owner a mapping", "owner: {a: b}\nimages:\n  img: {name: n, size: 1G}\n", Problem{1, 8, "owner", "must be a string, got a mapping", Invalid}},
		{"owner a boolean", "owner: true\nimages:\n  img: {name: n, size: 1G}\n", Problem{1, 8, "owner", "must be a string, got a boolean (true); quote it if it is meant as text", Invalid}},
		{"owner yes is text", "owner: yes\nimages:\n  img: {name: n, size: 1G}\n", Problem{}}, // YAML 1.2: yes is a string
		{"missing images", "owner: o\n", Problem{1, 1, "", `missing required key "images"`, Missing}},
		{"images null", "owner: o\nimages:\n", Problem{2, 8, "images", "is empty; it needs at least one image", Missing}},
		{"images empty", "owner: o\nimages: {}\n", Problem{2, 9, "images", "is empty; it needs at least one image", Missing}},
		{"images a list", "owner: o\nimages:\n  - name: n\n", Problem{3, 3, "images", "must be a mapping of image keys to images, got a list", Invalid}},
		{"image a scalar", "owner: o\nimages:\n  img: hello\n", Problem{3, 8, "images.img", `an image must be a mapping with name and size, got a string ("hello")`, Invalid}},
		{"image null", "owner: o\nimages:\n  img:\n", Problem{3, 7, "images.img", "an image must be a mapping with name and size, got nothing (null)", Invalid}},
		{"image key a list", "owner: o\nimages:\n  [a]: {name: n, size: 1G}\n", Problem{3, 3, "images", "keys must be plain names, got a list", Invalid}},
		{"missing name", image("    size: 1G\n"), Problem{3, 3, "images.img", `missing required key "name"`, Missing}},
		{"missing size", image("    name: n\n"), Problem{3, 3, "images.img", `missing required key "size"`, Missing}},
		{"name a list", image("    name: [a]\n    size: 1G\n"), Problem{4, 11, "images.img.name", "must be a string, got a list", Invalid}},
		{"name a boolean", image("    name: true\n    size: 1G\n"), Problem{4, 11, "images.img.name", "must be a string, got a boolean (true); quote it if it is meant as text", Invalid}},
		{"name empty", image("    name: ''\n    size: 1G\n"), Problem{4, 11, "images.img.name", "is empty", Missing}},
		{"name with slash", image("    name: a/b\n    size: 1G\n"), Problem{4, 11, "images.img.name", `"a/b" contains a path separator; the name must be a plain file name part`, Invalid}},
		{"name with backslash", image("    name: 'a\\b'\n    size: 1G\n"), Problem{4, 11, "images.img.name", `"a\\b" contains a path separator; the name must be a plain file name part`, Invalid}},
		{"name dot-dot", image("    name: ..\n    size: 1G\n"), Problem{4, 11, "images.img.name", `".." contains "..", which could escape the output directory`, Invalid}},
		{"name hidden", image("    name: .hidden\n    size: 1G\n"), Problem{4, 11, "images.img.name", `".hidden" starts with a dot; the image would be hidden in the output directory`, Invalid}},
		{"name NUL", image("    name: \"a\\0b\"\n    size: 1G\n"), Problem{4, 11, "images.img.name", `"a\x00b" contains a control character (NUL, newline, ...)`, Invalid}},
		{"name newline", image("    name: |\n      a\n    size: 1G\n"), Problem{4, 11, "images.img.name", `"a\n" contains a control character (NUL, newline, ...)`, Invalid}},
		{"size a mapping", image("    name: n\n    size: {a: 1}\n"), Problem{5, 11, "images.img.size", "must be a string, got a mapping", Invalid}},
		{"size junk", image("    name: n\n    size: 10GB\n"), Problem{5, 11, "images.img.size", `invalid size "10GB": expected a number of bytes with an optional suffix B, K, M, G, T, P or E (in either case; powers of 1024), e.g. 20G or 1.5T`, Invalid}},
		{"size words", image("    name: n\n    size: ten\n"), Problem{5, 11, "images.img.size", `invalid size "ten": expected a number of bytes with an optional suffix B, K, M, G, T, P or E (in either case; powers of 1024), e.g. 20G or 1.5T`, Invalid}},
		{"size negative", image("    name: n\n    size: -1G\n"), Problem{5, 11, "images.img.size", `invalid size "-1G": a size cannot be negative`, Invalid}},
		{"size too large", image("    name: n\n    size: 8E\n"), Problem{5, 11, "images.img.size", `invalid size "8E": too large: the largest size is 9223372036854775807 bytes (8 EiB - 1 byte)`, Invalid}},
		{"size null", image("    name: n\n    size:\n"), Problem{5, 10, "images.img.size", "has no value", Missing}},
		{"version a mapping", image(nameSize + "    version: {a: 1}\n"), Problem{6, 14, "images.img.version", "must be a string, got a mapping", Invalid}},
		{"version a list", image(nameSize + "    version: [1]\n"), Problem{6, 14, "images.img.version", "must be a string, got a list", Invalid}},
		{"version a boolean", image(nameSize + "    version: false\n"), Problem{6, 14, "images.img.version", "must be a string, got a boolean (false); quote it if it is meant as text", Invalid}},
		{"version with slash", image(nameSize + "    version: 9/4\n"), Problem{6, 14, "images.img.version", `"9/4" contains a path separator; the version must be a plain file name part`, Invalid}},
		{"version dot-dot", image(nameSize + "    version: ..\n"), Problem{6, 14, "images.img.version", `".." contains "..", which could escape the output directory`, Invalid}},
		{"format a list", image(nameSize + "    format: [raw]\n"), Problem{6, 13, "images.img.format", "must be a string, got a list", Invalid}},
		{"format empty", image(nameSize + "    format: ''\n"), Problem{6, 13, "images.img.format", "is empty", Missing}},
		{"format with slash", image(nameSize + "    format: raw/../../x\n"), Problem{6, 13, "images.img.format", `"raw/../../x" contains a path separator; the format must be a plain file name part`, Invalid}},
		{"input a string", image(nameSize + "    input: /path/x.qcow2\n"), Problem{6, 12, "images.img.input", `must be a mapping with path, url or oci, got a string ("/path/x.qcow2")`, Invalid}},
		{"input empty mapping", image(nameSize + "    input: {}\n"), Problem{6, 5, "images.img.input", `needs a "path", a "url" or an "oci"`, Missing}},
		{"input path and url", image(nameSize + "    input:\n      path: p\n      url: https://x/y\n"), Problem{8, 7, "images.img.input", "has both path (line 7) and url; give only one", Invalid}},
		{"input path and oci", image(nameSize + "    input:\n      oci: r.example/x:1\n      path: p\n"), Problem{8, 7, "images.img.input", "has both oci (line 7) and path; give only one", Invalid}},
		{"oci empty", image(nameSize + "    input:\n      oci: oci://\n"), Problem{7, 12, "images.img.input.oci", "is empty", Missing}},
		{"input neither", image(nameSize + "    input:\n      format: raw\n"), Problem{6, 5, "images.img.input", `needs a "path", a "url" or an "oci"`, Missing}},
		{"input path a list", image(nameSize + "    input:\n      path: [a]\n"), Problem{7, 13, "images.img.input.path", "must be a string, got a list", Invalid}},
		{"input path empty", image(nameSize + "    input:\n      path: ''\n"), Problem{7, 13, "images.img.input.path", "is empty", Missing}},
		{"input disk zero", image(nameSize + "    input:\n      path: a.ova\n      disk: 0\n"), Problem{8, 13, "images.img.input.disk", "must be a positive integer, got 0", Invalid}},
		{"input disk a string", image(nameSize + "    input:\n      path: a.ova\n      disk: two\n"), Problem{8, 13, "images.img.input.disk", `must be a positive integer, got a string ("two")`, Invalid}},
		{"url not http", image(nameSize + "    input:\n      url: ftp://x/y\n"), Problem{7, 12, "images.img.input.url", `"ftp://x/y" is not an http or https URL`, Invalid}},
		{"url no host", image(nameSize + "    input:\n      url: https:///y\n"), Problem{7, 12, "images.img.input.url", `"https:///y" is not an http or https URL`, Invalid}},
		{"url a mapping", image(nameSize + "    input:\n      url: {a: b}\n"), Problem{7, 12, "images.img.input.url", "must be a string, got a mapping", Invalid}},
		{"url empty list", image(nameSize + "    input:\n      url: []\n"), Problem{7, 12, "images.img.input.url", "is an empty list; give at least one URL", Missing}},
		{"url list item", image(nameSize + "    input:\n      url: [https://a/x, [b]]\n"), Problem{7, 26, "images.img.input.url[1]", "must be a string, got a list", Invalid}},
		{"input format a mapping", image(nameSize + "    input:\n      path: p\n      format: {a: 1}\n"), Problem{8, 15, "images.img.input.format", "must be a string, got a mapping", Invalid}},
		{"checksum a string", image(nameSize + "    input:\n      path: p\n      checksum: abc\n"), Problem{8, 17, "images.img.input.checksum", `must be a mapping with type and value, got a string ("abc")`, Invalid}},
		{"checksum null", image(nameSize + "    input:\n      path: p\n      checksum:\n"), Problem{8, 16, "images.img.input.checksum", "is empty; give type and value, or remove it", Missing}},
		{"checksum without type", image(nameSize + "    input:\n      path: p\n      checksum:\n        value: d41d8cd98f00b204e9800998ecf8427e\n"), Problem{8, 7, "images.img.input.checksum", `missing required key "type"`, Missing}},
		{"checksum without value", image(nameSize + "    input:\n      path: p\n      checksum:\n        type: md5\n"), Problem{8, 7, "images.img.input.checksum", `missing required key "value" (or "file", a checksum file that lists it)`, Missing}},
		{"checksum value and file", image(nameSize + "    input:\n      path: p\n      checksum:\n        type: md5\n        value: d41d8cd98f00b204e9800998ecf8427e\n        file: SUMS\n"), Problem{11, 15, "images.img.input.checksum", "has both value (line 10) and file; give only one", Invalid}},
		{"checksum type unknown", image(nameSize + "    input:\n      path: p\n      checksum: {type: sha-3, value: abc}\n"), Problem{8, 24, "images.img.input.checksum.type", `unknown checksum algorithm "sha-3": use one of md5, sha1, sha224, sha256, sha384, sha512, sha512_224, sha512_256, sha3_224, sha3_256, sha3_384, sha3_512, blake2b, blake2s`, Invalid}},
		{"checksum type shake", image(nameSize + "    input:\n      path: p\n      checksum: {type: shake_128, value: abc}\n"), Problem{8, 24, "images.img.input.checksum.type", `unknown checksum algorithm "shake_128": SHAKE needs an output length, which a checksum type cannot give; use sha3_256 or sha3_512 instead`, Invalid}},
		{"checksum type a list", image(nameSize + "    input:\n      path: p\n      checksum: {type: [md5], value: abc}\n"), Problem{8, 24, "images.img.input.checksum.type", "must be a string, got a list", Invalid}},
		{"checksum value wrong length", image(nameSize + "    input:\n      path: p\n      checksum: {type: md5, value: abc}\n"), Problem{8, 36, "images.img.input.checksum.value", `"abc" is not a md5 digest: expected 32 hexadecimal digits`, Invalid}},
		{"checksum value not hex", image(nameSize + "    input:\n      path: p\n      checksum: {type: md5, value: d41d8cd98f00b204e9800998ecf8427g}\n"), Problem{8, 36, "images.img.input.checksum.value", `"d41d8cd98f00b204e9800998ecf8427g" is not a md5 digest: expected 32 hexadecimal digits`, Invalid}},
		{"checksum value empty", image(nameSize + "    input:\n      path: p\n      checksum: {type: md5, value: ''}\n"), Problem{8, 36, "images.img.input.checksum.value", "is empty", Missing}},
		{"checksum value a mapping", image(nameSize + "    input:\n      path: p\n      checksum: {type: md5, value: {a: 1}}\n"), Problem{8, 36, "images.img.input.checksum.value", "must be a string, got a mapping", Invalid}},
		{"buffer_size zero", image(nameSize + "    input:\n      path: p\n      checksum: {type: md5, value: d41d8cd98f00b204e9800998ecf8427e, buffer_size: 0}\n"), Problem{8, 83, "images.img.input.checksum.buffer_size", "must be a positive integer, got 0", Invalid}},
		{"buffer_size quoted", image(nameSize + "    input:\n      path: p\n      checksum: {type: md5, value: d41d8cd98f00b204e9800998ecf8427e, buffer_size: '4096'}\n"), Problem{8, 83, "images.img.input.checksum.buffer_size", `must be a positive integer, got a string ("4096")`, Invalid}},
		{"buffer_size float", image(nameSize + "    input:\n      path: p\n      checksum: {type: md5, value: d41d8cd98f00b204e9800998ecf8427e, buffer_size: 1.5}\n"), Problem{8, 83, "images.img.input.checksum.buffer_size", "must be a positive integer, got a number (1.5)", Invalid}},
		{"read_bytes negative", image(nameSize + "    input:\n      path: p\n      checksum: {type: md5, value: d41d8cd98f00b204e9800998ecf8427e, read_bytes: -5}\n"), Problem{8, 82, "images.img.input.checksum.read_bytes", "must be a positive integer, got -5", Invalid}},
		{"read_bytes huge", image(nameSize + "    input:\n      path: p\n      checksum: {type: md5, value: d41d8cd98f00b204e9800998ecf8427e, read_bytes: 99999999999999999999}\n"), Problem{8, 82, "images.img.input.checksum.read_bytes", "must be a positive integer, got a number (99999999999999999999)", Invalid}},
		{"checksum file empty", image(nameSize + "    input:\n      path: p\n      checksum: {file: ''}\n"), Problem{8, 24, "images.img.input.checksum.file", "is empty", Missing}},
		{"signature without file", image(nameSize + "    input:\n      path: p\n      checksum: {type: md5, value: d41d8cd98f00b204e9800998ecf8427e, signature: s.gpg}\n"), Problem{8, 81, "images.img.input.checksum.signature", `signs a checksum file: give "file" too`, Invalid}},
		{"key without file", image(nameSize + "    input:\n      path: p\n      checksum: {type: md5, value: d41d8cd98f00b204e9800998ecf8427e, key: k.asc}\n"), Problem{8, 75, "images.img.input.checksum.key", `verifies a checksum file's signature: give "file" too`, Invalid}},
		{"signature a list", image(nameSize + "    input:\n      path: p\n      checksum: {file: SUMS, signature: [a]}\n"), Problem{8, 41, "images.img.input.checksum.signature", "must be a string, got a list", Invalid}},
		{"duplicate image key", "owner: o\nimages:\n  a: {name: a, size: 1G}\n  a: {name: b, size: 1G}\n", Problem{4, 3, "images.a", "duplicate key (first at line 3)", Invalid}},
		{"duplicate field", image("    name: n\n    size: 1G\n    size: 2G\n"), Problem{6, 5, "images.img.size", "duplicate key (first at line 5)", Invalid}},
		{"same output file", "owner: o\nimages:\n  a: {name: n, size: 1G, version: 1}\n  b: {name: n, size: 2G, version: 1, format: qcow2}\n", Problem{4, 0, "images.b", `writes the same file "n-1.qcow2" as images.a (line 3)`, Invalid}},
		{"merge of a scalar", "owner: o\nimages:\n  a:\n    <<: 1\n    name: n\n    size: 1G\n", Problem{4, 9, "images.a", "a merge key (<<) needs a mapping or a list of mappings, got a number (1)", Invalid}},
		{"custom tag", image("    name: !foo bar\n    size: 1G\n"), Problem{4, 11, "images.img.name", "must be a string, got a value tagged !foo", Invalid}},
		{"two documents", "owner: o\nimages: {a: {name: n, size: 1G}}\n---\nowner: p\n", Problem{3, 1, "", "the file holds more than one YAML document (---); put everything in one", Syntax}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "p.yml")
			if tt.want.Msg == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			wantProblems(t, err, []Problem{tt.want})
		})
	}
}

// An oci: reference is checked by the registry client's rules, when given,
// and reported with its line.
func TestReferenceCheck(t *testing.T) {
	check := WithReferenceCheck(func(ref string) error {
		if strings.ToLower(ref) != ref {
			return fmt.Errorf("invalid image reference %q: repository names are lowercase", ref)
		}
		return nil
	})
	_, err := Parse([]byte(image("    name: n\n    size: 1G\n    input:\n      oci: r.example/VM:1\n")), "p.yml", check)
	wantProblems(t, err, []Problem{{7, 12, "images.img.input.oci", `invalid image reference "r.example/VM:1": repository names are lowercase`, Invalid}})
	if _, err := Parse([]byte(image("    name: n\n    size: 1G\n    input:\n      oci: r.example/vm:1\n")), "p.yml", check); err != nil {
		t.Fatal(err)
	}
}

func TestManyProblems(t *testing.T) {
	src := `owner: [x]
images:
  a:
    name: ../evil
    size: 10GB
    version: {x: 1}
    format: true
    input:
      path: p
      url: ftp://x
      checksum:
        type: sha-3
        buffer_size: "10"
        read_bytes: 0
  b:
    size: 1G
  c: 12
  d:
    name: dup
    size: 1G
  e:
    name: dup
    size: 2G
  f:
    name: f
    size: 1G
    input:
      url: [https://a.example/x, "notaurl"]
      checksum:
        type: sha256
        value: abc
`
	want := `many.yml:1: owner: must be a string, got a list
many.yml:4: images.a.name: "../evil" contains a path separator; the name must be a plain file name part
many.yml:5: images.a.size: invalid size "10GB": expected a number of bytes with an optional suffix B, K, M, G, T, P or E (in either case; powers of 1024), e.g. 20G or 1.5T
many.yml:6: images.a.version: must be a string, got a mapping
many.yml:7: images.a.format: must be a string, got a boolean (true); quote it if it is meant as text
many.yml:10: images.a.input: has both path (line 9) and url; give only one
many.yml:10: images.a.input.url: "ftp://x" is not an http or https URL
many.yml:11: images.a.input.checksum: missing required key "value" (or "file", a checksum file that lists it)
many.yml:12: images.a.input.checksum.type: unknown checksum algorithm "sha-3": use one of md5, sha1, sha224, sha256, sha384, sha512, sha512_224, sha512_256, sha3_224, sha3_256, sha3_384, sha3_512, blake2b, blake2s
many.yml:13: images.a.input.checksum.buffer_size: must be a positive integer, got a string ("10")
many.yml:14: images.a.input.checksum.read_bytes: must be a positive integer, got 0
many.yml:15: images.b: missing required key "name"
many.yml:17: images.c: an image must be a mapping with name and size, got a number (12)
many.yml:21: images.e: writes the same file "dup.qcow2" as images.d (line 18)
many.yml:28: images.f.input.url[1]: "notaurl" is not an http or https URL
many.yml:31: images.f.input.checksum.value: "abc" is not a sha256 digest: expected 64 hexadecimal digits`
	_, err := Parse([]byte(src), "many.yml")
	if err == nil {
		t.Fatal("no error")
	}
	if err.Error() != want {
		t.Errorf("Error()\n got:\n%s\nwant:\n%s", err, want)
	}
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.File != "many.yml" || len(ve.Problems) != 16 {
		t.Fatalf("%#v", err)
	}
	if ve.Problems[0].Kind != Invalid || ve.Problems[7].Kind != Missing {
		t.Errorf("kinds: %+v", ve.Problems)
	}
}

// TestMergeBombs: aliases must not multiply the work of merge keys.
func TestMergeBombs(t *testing.T) {
	var b strings.Builder
	b.WriteString("owner: o\nlaughs:\n  l0: &l0 {name: n, size: 1G}\n")
	for i := 1; i <= 9; i++ {
		refs := strings.TrimSuffix(strings.Repeat("*l"+strconv.Itoa(i-1)+", ", 10), ", ")
		b.WriteString("  l" + strconv.Itoa(i) + ": &l" + strconv.Itoa(i) + " {<<: [" + refs + "]}\n")
	}
	b.WriteString("images:\n  img:\n    <<: *l9\n")
	a, err := Parse([]byte(b.String()), "laughs.yml")
	if err != nil || a.Images[0].Name != "n" {
		t.Fatalf("laughs: %v", err)
	}

	b.Reset()
	b.WriteString("owner: o\nparts:\n")
	var refs []string
	for i := range 100 {
		b.WriteString("  p" + strconv.Itoa(i) + ": &p" + strconv.Itoa(i) + " {k" + strconv.Itoa(i) + ": v}\n")
		refs = append(refs, "*p"+strconv.Itoa(i))
	}
	b.WriteString("  base: &base {size: 1G, <<: [" + strings.Join(refs, ", ") + "]}\nimages:\n")
	for i := range 200 {
		b.WriteString("  i" + strconv.Itoa(i) + ": {<<: *base, name: n" + strconv.Itoa(i) + "}\n")
	}
	_, err = Parse([]byte(b.String()), "wide.yml")
	if err == nil || !strings.Contains(err.Error(), "merge keys (<<) expand to too much; the file uses more than 10000 merges") {
		t.Errorf("wide merges: %v", err)
	}
}

func TestErrorListIsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("owner: o\nimages:\n")
	for i := range maxListed + 50 {
		b.WriteString("  i" + strconv.Itoa(i) + ": {size: 1G}\n")
	}
	_, err := Parse([]byte(b.String()), "big.yml")
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != maxListed+50 {
		t.Fatalf("%v", err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != maxListed+1 || lines[maxListed] != "big.yml: and 50 more problems" {
		t.Errorf("%d lines, last %q", len(lines), lines[len(lines)-1])
	}
}

func TestUnreadable(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       Problem
	}{
		{"empty", "", Problem{Msg: "the file is empty; expected a mapping with owner and images", Kind: Syntax}},
		{"comments only", "# nothing\n\n", Problem{Msg: "the file is empty; expected a mapping with owner and images", Kind: Syntax}},
		{"null", "~\n", Problem{Line: 1, Column: 1, Msg: "the file is empty; expected a mapping with owner and images", Kind: Syntax}},
		{"syntax", "owner: o\nimages:\n  a:\n   name: x\n  b: [\n", Problem{Line: 5, Msg: "not valid YAML: did not find expected node content", Kind: Syntax}},
		{"bad indentation", "owner: o\n images: x\n", Problem{Line: 2, Msg: "not valid YAML: mapping values are not allowed in this context", Kind: Syntax}},
		{"tab", "owner: o\n\timages: x\n", Problem{Line: 2, Msg: "not valid YAML: a tab in the indentation: YAML indents with spaces only (the parser said: found a tab character that violates indentation)", Kind: Syntax}},
		{"tab deeper", "owner: me\nimages:\n  a:\n\tname: a\n    size: 1G\n", Problem{Line: 4, Msg: "not valid YAML: a tab in the indentation: YAML indents with spaces only (the parser said: found character that cannot start any token)", Kind: Syntax}},
		{"mis-indented line 6", "owner: me\nimages:\n  a:\n    name: a\n    size: 1G\n   format: raw\n", Problem{Line: 6, Msg: "not valid YAML: the line is indented by 3 spaces, which matches none of the blocks it could belong to (0, 2 or 4 spaces) (the parser said: did not find expected key)", Kind: Syntax}},
		{"a block scalar is not judged", "owner: |\n   any\n       indent\n   back\nimages: [\n", Problem{Line: 5, Msg: "not valid YAML: did not find expected node content", Kind: Syntax}},
		{"unknown anchor", "owner: *x\n", Problem{Msg: "not valid YAML: unknown anchor 'x' referenced", Kind: Syntax}},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.yaml), "u.yml")
		var ve *ValidationError
		if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0] != tt.want {
			t.Errorf("%s: %#v; want %+v", tt.name, err, tt.want)
		}
	}

	big := make([]byte, MaxFileSize+1)
	if _, err := Parse(big, "big.yml"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized Parse: %v", err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "big.yml")
	if err := os.WriteFile(path, big, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized Load: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Load(dir); err == nil {
		t.Error("a directory: no error")
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "shared", "reference", "*.yml"))
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(image("    name: n\n    size: 1.5G\n    version: 08\n    input:\n      url: [https://a/x]\n      checksum: {file: SUMS, signature: s, key: k, read_bytes: 1000}\n")))
	f.Add([]byte("owner: o\nimages:\n  b: &b {name: b, size: 1G}\n  c: {<<: [*b], name: c}\n"))
	f.Add([]byte("a: &a\n  <<: *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := Parse(data, "fuzz.yml")
		if err != nil {
			var ve *ValidationError
			if errors.As(err, &ve) {
				if len(ve.Problems) == 0 {
					t.Fatal("ValidationError without problems")
				}
				for i := 1; i < len(ve.Problems); i++ {
					if ve.Problems[i].Line < ve.Problems[i-1].Line {
						t.Fatalf("problems out of line order: %+v", ve.Problems)
					}
				}
				if ve.Error() == "" {
					t.Fatal("empty message")
				}
			}
			return
		}
		if len(a.Images) == 0 || strings.TrimSpace(a.Owner) == "" {
			t.Fatalf("valid architecture without owner or images: %+v", a)
		}
		names := map[string]bool{}
		for _, img := range a.Images {
			if img.Name == "" || img.Format == "" || img.SizeBytes < 0 || strings.ContainsAny(img.Name+img.Version+img.Format, "/\\\x00") {
				t.Fatalf("bad image accepted: %+v", img)
			}
			n := OutputName(img.Name, img.Version, img.Format)
			if names[n] {
				t.Fatalf("two images write %q", n)
			}
			names[n] = true
			if in := img.Input; in != nil {
				given := 0
				for _, s := range []string{in.Path, in.URL, in.OCI} {
					if s != "" {
						given++
					}
				}
				if given != 1 {
					t.Fatalf("input without exactly one of path, url and oci: %+v", in)
				}
			}
		}
	})
}

func TestOutputName(t *testing.T) {
	tests := []struct{ name, version, format, want string }{
		{"rocky", "9.4", "qcow2", "rocky-9.4.qcow2"},
		{"rocky", "", "raw", "rocky.raw"},
		{"input-path-image", "12", "qcow2", "input-path-image-12.qcow2"},
	}
	for _, tc := range tests {
		if got := OutputName(tc.name, tc.version, tc.format); got != tc.want {
			t.Errorf("OutputName(%q, %q, %q) = %q, want %q", tc.name, tc.version, tc.format, got, tc.want)
		}
	}
}

func TestInputDisk(t *testing.T) {
	a, err := Parse([]byte(image("    name: n\n    size: 1G\n    input:\n      path: a.ova\n      disk: 2\n")), "f.yml")
	if err != nil || a.Images[0].Input.Disk != 2 {
		t.Fatalf("disk: 2: %v %+v", err, a)
	}
	a, err = Parse([]byte(image("    name: n\n    size: 1G\n    input:\n      path: a.ova\n      disks: 2\n")), "f.yml")
	if err != nil || len(a.Warnings) != 1 || !strings.Contains(a.Warnings[0], `unknown key "disks" ignored; did you mean "disk"?`) {
		t.Fatalf("disks: 2: %v %q", err, a.Warnings)
	}
}
