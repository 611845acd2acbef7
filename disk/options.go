package disk

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// ErrOption: a format option (-o KEY=VALUE, format_options:) the format
// does not have, or a value it does not take. Callers map it onto an
// invalid attribute (return code 5).
var ErrOption = errors.New("invalid format option")

// Option is one of a format's create options, spelled as qemu-img spells
// it, for --help, completion and the errors that list the valid ones.
type Option struct {
	Name    string
	Help    string
	Values  []string // the values it takes when they are a list; nil: Help says
	Default string
}

// Compressor is what a Writer made with CreateOptions.Compress offers the
// converter, which compresses on every core while the file is written in
// order:
//
//   - CompressUnit is the virtual size of the units data is stored in
//     (a qcow2 cluster, a VMDK grain);
//   - Compress turns the unit of virtual data at off (a multiple of the
//     unit; the last unit of an image may be short) into the bytes the
//     file stores for it. It is safe for concurrent use and its result
//     depends on its arguments only, so that outputs are reproducible.
//     The result may be unit itself: the converter leaves unit unchanged
//     until WriteStored has returned;
//   - WriteStored appends what Compress returned, in increasing offset
//     order, from one goroutine. Units of zeros are never passed: they
//     read as zeros without being stored.
type Compressor interface {
	CompressUnit() int64
	Compress(off int64, unit []byte) ([]byte, error)
	WriteStored(off int64, stored []byte) error
}

// ParseOptions reads "KEY=VALUE[,KEY=VALUE...]" as qemu-img's -o does
// (a value may hold a comma written twice: "a=x,,y" is a=x,y).
func ParseOptions(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == ',' && i+1 < len(s) && s[i+1] == ',':
			cur.WriteByte(',')
			i++
		case s[i] == ',':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	parts = append(parts, cur.String())
	for _, p := range parts {
		k, v, ok := strings.Cut(p, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: %q is not KEY=VALUE", ErrOption, p)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("%w: %s is given twice", ErrOption, k)
		}
		out[k] = strings.TrimSpace(v)
	}
	return out, nil
}

// CheckOptions refuses options the format does not have and values that
// are not in an option's list, naming the valid ones. What else a value
// must be (a power of two, say) the format's Create checks.
func (f Format) CheckOptions(opt CreateOptions) error {
	keys := make([]string, 0, len(opt.Options))
	for k := range opt.Options {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		i := slices.IndexFunc(f.Options, func(o Option) bool { return o.Name == k })
		if i < 0 {
			if len(f.Options) == 0 {
				return fmt.Errorf("%w: %s images take no options (%s given)", ErrOption, f.Name, k)
			}
			return fmt.Errorf("%w: %s images have no option %q; they take %s", ErrOption, f.Name, k, f.optionNames())
		}
		if o := f.Options[i]; o.Values != nil && !slices.Contains(o.Values, opt.Options[k]) {
			return fmt.Errorf("%w: %s=%s: %s takes %s", ErrOption, k, opt.Options[k], k, strings.Join(o.Values, ", "))
		}
	}
	if opt.Compress && !f.Compress {
		return fmt.Errorf("%w: %s images cannot be compressed", ErrOption, f.Name)
	}
	if f.Validate != nil {
		return f.Validate(opt)
	}
	return nil
}

func (f Format) optionNames() string {
	var names []string
	for _, o := range f.Options {
		names = append(names, o.Name)
	}
	return strings.Join(names, ", ")
}
