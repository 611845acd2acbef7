package checksum_test

import (
	"fmt"

	"github.com/ucphhpc/gen-vm-image-go/checksum"
)

func ExampleLookup() {
	sums := []byte(`-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA256

# Rocky-9-GenericCloud-Base.latest.x86_64.qcow2: 609812480 bytes
SHA256 (Rocky-9-GenericCloud-Base.latest.x86_64.qcow2) = 39277948d53a10f1087454a1e0ed1c9bb48b48f6a4ddbf5113adc36f70be6730
-----BEGIN PGP SIGNATURE-----
...
-----END PGP SIGNATURE-----
`)
	entries, err := checksum.ParseSums(sums)
	if err != nil {
		fmt.Println(err)
		return
	}
	e, err := checksum.Lookup(entries, "Rocky-9-GenericCloud-Base.latest.x86_64.qcow2", "sha256")
	fmt.Println(e.Algorithm, e.Digest, e.Line, err)
	// Output:
	// sha256 39277948d53a10f1087454a1e0ed1c9bb48b48f6a4ddbf5113adc36f70be6730 5 <nil>
}
