package checksum

import (
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
)

// vectors were computed with Python 3.11's hashlib (OpenSSL 3.0):
// hashlib.new(name, data).hexdigest() for the fox sentence and for b"".
var vectors = []struct {
	name      string
	size      int
	fox, none string
}{
	{"md5", 16, "9e107d9d372bb6826bd81d3542a419d6", "d41d8cd98f00b204e9800998ecf8427e"},
	{"sha1", 20, "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
	{"sha224", 28, "730e109bd7a8a32b1cb9d9a09aa2325d2430587ddbc0c38bad911525", "d14a028c2a3a2bc9476102bb288234c415a2b01f828ea62ac5b3e42f"},
	{"sha256", 32, "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
	{"sha384", 48, "ca737f1014a48f4c0b6dd43cb177b0afd9e5169367544c494011e3317dbf9a509cb1e5dc1e85a941bbee3d7f2afbc9b1", "38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b"},
	{"sha512", 64, "07e547d9586f6a73f73fbac0435ed76951218fb7d0c8d788a309d785436bbb642e93a252a954f23912547d1e8a3b5ed6e1bfd7097821233fa0538f3db854fee6", "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"},
	{"sha512_224", 28, "944cd2847fb54558d4775db0485a50003111c8e5daa63fe722c6aa37", "6ed0dd02806fa89e25de060c19d3ac86cabb87d6a0ddd05c333b84f4"},
	{"sha512_256", 32, "dd9d67b371519c339ed8dbd25af90e976a1eeefd4ad3d889005e532fc5bef04d", "c672b8d1ef56ed28ab87c3622c5114069bdd3ad7b8f9737498d0c01ecef0967a"},
	{"sha3_224", 28, "d15dadceaa4d5d7bb3b48f446421d542e08ad8887305e28d58335795", "6b4e03423667dbb73b6e15454f0eb1abd4597f9a1b078e3f5b5a6bc7"},
	{"sha3_256", 32, "69070dda01975c8c120c3aada1b282394e7f032fa9cf32f4cb2259a0897dfc04", "a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"},
	{"sha3_384", 48, "7063465e08a93bce31cd89d2e3ca8f602498696e253592ed26f07bf7e703cf328581e1471a7ba7ab119b1a9ebdf8be41", "0c63a75b845e4f7d01107d852e4c2485c51a50aaaa94fc61995e71bbee983a2ac3713831264adb47fb6bd1e058d5f004"},
	{"sha3_512", 64, "01dedd5de4ef14642445ba5f5b97c15e47b9ad931326e4b0727cd94cefc44fff23f07bf543139939b49128caf436dc1bdee54fcb24023a08d9403f9b4bf0d450", "a69f73cca23a9ac5c8b567dc185a756e97c982164fe25859e0d1dcc1475c80a615b2123af1f5f94c11e3e9402c3ac558f500199d95b6d3e301758586281dcd26"},
	{"blake2b", 64, "a8add4bdddfd93e4877d2746e62817b116364a1fa7bc148d95090bc7333b3673f82401cf7aa2e4cb1ecd90296e3f14cb5413f8ed77be73045b13914cdcd6a918", "786a02f742015903c6c6fd852552d272912f4740e15847618a86e217f71f5419d25e1031afee585313896444934eb04b903a685b1448b755d56f701afe9be2ce"},
	{"blake2s", 32, "606beeec743ccbeff6cbcdf5d5302aa855c256c29b88c8ed331ea1a6bf3c8812", "69217a3079908094e11121d042354a7c1f55b6482ca1a51e1b250dfd1ed0eef9"},
}

const fox = "The quick brown fox jumps over the lazy dog"

func TestVectors(t *testing.T) {
	for _, v := range vectors {
		h, err := New(v.name)
		if err != nil {
			t.Fatalf("New(%q): %v", v.name, err)
		}
		if h.Size() != v.size {
			t.Errorf("%s: Size() = %d; want %d", v.name, h.Size(), v.size)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != v.none {
			t.Errorf("%s(\"\") = %s; want %s", v.name, got, v.none)
		}
		h.Write([]byte(fox))
		if got := hex.EncodeToString(h.Sum(nil)); got != v.fox {
			t.Errorf("%s(fox) = %s; want %s", v.name, got, v.fox)
		}
		if n, err := Size(v.name); err != nil || n != v.size {
			t.Errorf("Size(%q) = %d, %v; want %d", v.name, n, err, v.size)
		}
	}
}

func TestNames(t *testing.T) {
	var want []string
	for _, v := range vectors {
		want = append(want, v.name)
	}
	got := Names()
	if !slices.Equal(got, want) {
		t.Errorf("Names() = %v; want %v", got, want)
	}
	got[0] = "changed" // callers own the slice
	if Names()[0] != "md5" {
		t.Error("Names() shares its slice")
	}
}

// TestSpellings: every spelling hashlib.new accepted on Python 3.11 with
// OpenSSL 3.0, mapped to hashlib's name for it; plus cases hashlib itself
// refuses for its built-in names but we accept (documented superset).
func TestSpellings(t *testing.T) {
	tests := map[string]string{
		"sha256": "sha256", "SHA256": "sha256", "Sha256": "sha256", "sha-256": "sha256", "SHA2-256": "sha256",
		"MD5": "md5", "SHA1": "sha1", "SHA-1": "sha1",
		"sha-224": "sha224", "sha2-224": "sha224", "SHA224": "sha224",
		"SHA-384": "sha384", "sha2-384": "sha384", "sha-512": "sha512", "sha2-512": "sha512",
		"sha512-224": "sha512_224", "SHA512-224": "sha512_224", "sha-512/224": "sha512_224", "sha2-512/224": "sha512_224",
		"sha512-256": "sha512_256", "SHA-512/256": "sha512_256", "SHA512_256": "sha512_256",
		"sha3-224": "sha3_224", "SHA3-256": "sha3_256", "sha3-384": "sha3_384", "sha3-512": "sha3_512",
		"blake2b512": "blake2b", "BLAKE2B-512": "blake2b", "BLAKE2b512": "blake2b",
		"blake2s256": "blake2s", "BLAKE2s-256": "blake2s",
		// hashlib refuses these two (built-in names are case-sensitive); we don't.
		"SHA3_256": "sha3_256", "BLAKE2B": "blake2b",
	}
	for in, want := range tests {
		got, err := CanonicalName(in)
		if err != nil || got != want {
			t.Errorf("CanonicalName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestUnknownAlgorithms(t *testing.T) {
	tests := []struct{ in, msg string }{
		{"", `unknown checksum algorithm "": use one of md5, sha1, sha224, sha256, sha384, sha512, sha512_224, sha512_256, sha3_224, sha3_256, sha3_384, sha3_512, blake2b, blake2s`},
		{"sha", "use one of md5, sha1,"},
		{"sha257", "use one of"},
		{" sha256", "use one of"}, // hashlib does not trim either
		{"sha256 ", "use one of"},
		{"crc32", "use one of"},
		{"md4", "use one of"},
		{"ripemd160", "use one of"},
		{"blake2b-256", "use one of"}, // a different digest from hashlib's blake2b
		{"shake_128", `unknown checksum algorithm "shake_128": SHAKE needs an output length`},
		{"SHAKE_256", "SHAKE needs an output length"},
	}
	for _, tt := range tests {
		_, err := New(tt.in)
		if !errors.Is(err, ErrUnknownAlgorithm) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("New(%q) error = %v; want ErrUnknownAlgorithm containing %q", tt.in, err, tt.msg)
		}
		if _, err := CanonicalName(tt.in); !errors.Is(err, ErrUnknownAlgorithm) {
			t.Errorf("CanonicalName(%q) error = %v", tt.in, err)
		}
		if _, err := Size(tt.in); !errors.Is(err, ErrUnknownAlgorithm) {
			t.Errorf("Size(%q) error = %v", tt.in, err)
		}
	}
}
