package genvm

import (
	"os"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/record"
)

// imageFiles names what dir holds besides the record.
func imageFiles(t testing.TB, dir string) []string {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		switch e.Name() {
		case record.SumsName, record.ManifestName, ".gen-vm-image.lock":
		default:
			names = append(names, e.Name())
		}
	}
	return names
}
