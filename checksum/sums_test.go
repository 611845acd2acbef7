package checksum

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

var (
	md5Hex    = strings.Repeat("a1", 16)
	sha1Hex   = strings.Repeat("b2", 20)
	sha256Hex = "39277948d53a10f1087454a1e0ed1c9bb48b48f6a4ddbf5113adc36f70be6730"
	sha512Hex = strings.Repeat("c3", 64)
)

func TestParseSums(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []SumsEntry
	}{
		{
			name: "GNU text and binary",
			in:   sha256Hex + "  debian-12-generic-amd64.qcow2\n" + strings.ToUpper(sha512Hex) + " *ubuntu.img\n",
			want: []SumsEntry{
				{Algorithm: "sha256", Guessed: true, Digest: sha256Hex, Name: "debian-12-generic-amd64.qcow2", Line: 1},
				{Algorithm: "sha512", Guessed: true, Digest: sha512Hex, Name: "ubuntu.img", Line: 2},
			},
		},
		{
			name: "GNU lengths",
			in:   md5Hex + "  a\n" + sha1Hex + "  b\n" + strings.Repeat("d", 56) + "  c\n" + strings.Repeat("e", 96) + "  d\n",
			want: []SumsEntry{
				{Algorithm: "md5", Guessed: true, Digest: md5Hex, Name: "a", Line: 1},
				{Algorithm: "sha1", Guessed: true, Digest: sha1Hex, Name: "b", Line: 2},
				{Algorithm: "sha224", Guessed: true, Digest: strings.Repeat("d", 56), Name: "c", Line: 3},
				{Algorithm: "sha384", Guessed: true, Digest: strings.Repeat("e", 96), Name: "d", Line: 4},
			},
		},
		{
			name: "GNU single space, spaces in names, subdirectory, CRLF",
			in:   sha256Hex + " md5-r-style.iso\r\n" + sha256Hex + "  name with  spaces.img \r\n" + sha256Hex + "  ./sub/dir.img\r\n",
			want: []SumsEntry{
				{Algorithm: "sha256", Guessed: true, Digest: sha256Hex, Name: "md5-r-style.iso", Line: 1},
				{Algorithm: "sha256", Guessed: true, Digest: sha256Hex, Name: "name with  spaces.img ", Line: 2},
				{Algorithm: "sha256", Guessed: true, Digest: sha256Hex, Name: "./sub/dir.img", Line: 3},
			},
		},
		{
			name: "GNU escaped name",
			in:   `\` + sha256Hex + `  back\\slash\nnewline` + "\n",
			want: []SumsEntry{
				{Algorithm: "sha256", Guessed: true, Digest: sha256Hex, Name: "back\\slash\nnewline", Line: 1},
			},
		},
		{
			name: "bare digest",
			in:   sha256Hex + "\n",
			want: []SumsEntry{{Algorithm: "sha256", Guessed: true, Digest: sha256Hex, Line: 1}},
		},
		{
			name: "BSD, openssl and b2sum tags",
			in: "SHA256 (Rocky-9-GenericCloud-Base.latest.x86_64.qcow2) = " + sha256Hex + "\n" +
				"SHA512(file (1).iso)= " + sha512Hex + "\n" +
				"MD5 (x) = " + md5Hex + "\n" +
				"SHA3-256 (y) = " + sha256Hex + "\n" +
				"BLAKE2b (z) = " + sha512Hex + "\n",
			want: []SumsEntry{
				{Algorithm: "sha256", Digest: sha256Hex, Name: "Rocky-9-GenericCloud-Base.latest.x86_64.qcow2", Line: 1},
				{Algorithm: "sha512", Digest: sha512Hex, Name: "file (1).iso", Line: 2},
				{Algorithm: "md5", Digest: md5Hex, Name: "x", Line: 3},
				{Algorithm: "sha3_256", Digest: sha256Hex, Name: "y", Line: 4},
				{Algorithm: "blake2b", Digest: sha512Hex, Name: "z", Line: 5},
			},
		},
		{
			name: "PGP clear-signed Fedora-style CHECKSUM",
			in: "-----BEGIN PGP SIGNED MESSAGE-----\n" +
				"Hash: SHA256\n" +
				"\n" +
				"# Fedora-Cloud-Base-40-1.14.x86_64.qcow2: 397475840 bytes\n" +
				"SHA256 (Fedora-Cloud-Base-40-1.14.x86_64.qcow2) = " + sha256Hex + "\n" +
				"- -dash-escaped.img\n" +
				"-----BEGIN PGP SIGNATURE-----\n" +
				"\n" +
				"iQIzBAEBCAAdFiEE" + sha256Hex + "\n" +
				sha256Hex + "  inside-the-signature\n" +
				"=abcd\n" +
				"-----END PGP SIGNATURE-----\n",
			want: []SumsEntry{
				{Algorithm: "sha256", Digest: sha256Hex, Name: "Fedora-Cloud-Base-40-1.14.x86_64.qcow2", Line: 5},
			},
		},
		{
			name: "dash-escaped digest line",
			in: "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n" +
				"- " + sha512Hex + "  dashed\n" +
				"-----BEGIN PGP SIGNATURE-----\nxx\n-----END PGP SIGNATURE-----\n",
			want: []SumsEntry{{Algorithm: "sha512", Guessed: true, Digest: sha512Hex, Name: "dashed", Line: 4}},
		},
		{
			name: "comments, blanks and junk skipped",
			in: "# comment " + sha256Hex + "  commented\n\n   \n" +
				"<html>not a sums file</html>\n" +
				strings.Repeat("a", 63) + "  wrong-length\n" +
				"SHA256 (short) = " + md5Hex + "\n" +
				"BLAKE2b-256 (b2-256) = " + sha256Hex + "\n" +
				"CRC32 (crc) = 12345678\n" +
				sha256Hex + "x  not-hex-separated\n" +
				"\t" + sha1Hex + "  indented\n",
			want: []SumsEntry{{Algorithm: "sha1", Guessed: true, Digest: sha1Hex, Name: "indented", Line: 10}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSums([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseSumsErrors(t *testing.T) {
	for _, in := range []string{"", "\n\n", "# only comments\n", "<html><body>404</body></html>", "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n"} {
		if _, err := ParseSums([]byte(in)); !errors.Is(err, ErrNoSums) {
			t.Errorf("ParseSums(%q) error = %v; want ErrNoSums", in, err)
		}
	}
	big := bytes.Repeat([]byte("#"), MaxSumsSize+1)
	if _, err := ParseSums(big); !errors.Is(err, ErrSumsTooLarge) {
		t.Errorf("oversized: %v", err)
	}
	if _, err := ReadSums(bytes.NewReader(big)); !errors.Is(err, ErrSumsTooLarge) {
		t.Errorf("ReadSums oversized: %v", err)
	}
	entries, err := ReadSums(strings.NewReader(sha256Hex + "  x\n"))
	if err != nil || len(entries) != 1 {
		t.Errorf("ReadSums = %v, %v", entries, err)
	}
}

func TestLookup(t *testing.T) {
	sums := "SHA256 (rocky.qcow2) = " + sha256Hex + "\n" +
		"SHA512 (rocky.qcow2) = " + sha512Hex + "\n" +
		sha256Hex + "  ./debian.qcow2\n" +
		md5Hex + " *images/alpine.iso\n" +
		sha1Hex + "  dup.img\n" +
		strings.Repeat("f", 40) + "  dup.img\n" +
		sha1Hex + "  same.img\n" +
		sha1Hex + "  same.img\n"
	entries, err := ParseSums([]byte(sums))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file, alg string
		wantAlg   string
		wantHex   string
		wantErr   error
	}{
		{"rocky.qcow2", "", "sha512", sha512Hex, nil}, // strongest wins
		{"rocky.qcow2", "sha256", "sha256", sha256Hex, nil},
		{"rocky.qcow2", "SHA-512", "sha512", sha512Hex, nil},
		{"rocky.qcow2", "md5", "", "", ErrNotListed},
		{"debian.qcow2", "", "sha256", sha256Hex, nil},
		{"./debian.qcow2", "", "sha256", sha256Hex, nil},
		{"debian.qcow2", "sha3_256", "sha3_256", sha256Hex, nil}, // GNU lines match by length
		{"debian.qcow2", "blake2s", "blake2s", sha256Hex, nil},
		{"debian.qcow2", "sha512", "", "", ErrNotListed},
		{"alpine.iso", "", "md5", md5Hex, nil},
		{"images/alpine.iso", "", "md5", md5Hex, nil},
		{"dup.img", "", "", "", ErrAmbiguous},
		{"same.img", "sha1", "sha1", sha1Hex, nil},
		{"missing.img", "", "", "", ErrNotListed},
		{"rocky.qcow2", "sha-3", "", "", ErrUnknownAlgorithm},
	}
	for _, tt := range tests {
		e, err := Lookup(entries, tt.file, tt.alg)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Lookup(%q, %q) = %+v, %v; want %v", tt.file, tt.alg, e, err, tt.wantErr)
			}
			continue
		}
		if err != nil || e.Algorithm != tt.wantAlg || e.Digest != tt.wantHex {
			t.Errorf("Lookup(%q, %q) = %+v, %v; want %s %s", tt.file, tt.alg, e, err, tt.wantAlg, tt.wantHex)
		}
	}

	_, err = Lookup(entries, "missing.img", "sha256")
	if err == nil || !strings.Contains(err.Error(), `no entry for "missing.img" with a sha256 digest (it lists "rocky.qcow2", "rocky.qcow2", "./debian.qcow2"`) {
		t.Errorf("not-listed message: %v", err)
	}

	bare, _ := ParseSums([]byte(sha256Hex + "\n"))
	if e, err := Lookup(bare, "anything.qcow2", "sha256"); err != nil || e.Digest != sha256Hex {
		t.Errorf("bare digest: %+v, %v", e, err)
	}
	if _, err := Lookup(bare, "anything.qcow2", "sha512"); !errors.Is(err, ErrNotListed) {
		t.Errorf("bare digest, wrong length: %v", err)
	}
}

func FuzzParseSums(f *testing.F) {
	f.Add([]byte(sha256Hex + "  debian.qcow2\n"))
	f.Add([]byte("SHA256 (a (b).img) = " + sha256Hex + "\r\n# c\n"))
	f.Add([]byte(`\` + sha1Hex + ` *a\\b\nc` + "\n"))
	f.Add([]byte("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n- " + md5Hex + "  x\n-----BEGIN PGP SIGNATURE-----\ny\n-----END PGP SIGNATURE-----\n"))
	f.Add([]byte(sha512Hex))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := ParseSums(data)
		if err != nil {
			if !errors.Is(err, ErrNoSums) && !errors.Is(err, ErrSumsTooLarge) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, e := range entries {
			size, err := Size(e.Algorithm)
			if err != nil {
				t.Fatalf("entry %+v: %v", e, err)
			}
			if len(e.Digest) != 2*size || strings.ToLower(e.Digest) != e.Digest {
				t.Fatalf("entry %+v: bad digest for %s", e, e.Algorithm)
			}
			if e.Line < 1 || e.Line > lines {
				t.Fatalf("entry %+v: line out of range 1..%d", e, lines)
			}
			got, err := Lookup(entries, e.Name, e.Algorithm)
			if err != nil && !errors.Is(err, ErrAmbiguous) {
				t.Fatalf("Lookup(%q, %q) of a parsed entry: %v", e.Name, e.Algorithm, err)
			}
			if err == nil && got.Algorithm != e.Algorithm {
				t.Fatalf("Lookup(%q, %q) = %+v", e.Name, e.Algorithm, got)
			}
		}
	})
}
