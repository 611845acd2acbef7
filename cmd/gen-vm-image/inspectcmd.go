package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	genvm "github.com/ucphhpc/gen-vm-image-go"
	"github.com/ucphhpc/gen-vm-image-go/disk"
	"github.com/ucphhpc/gen-vm-image-go/inspect"
	"github.com/ucphhpc/gen-vm-image-go/size"
)

var inspectOptions = []option{
	{names: []string{"-f", "--format"}, dest: "format", metavar: "FORMAT", complete: completeFormat,
		help: "The image's format; it must agree with the content. (default: detected)"},
	{names: []string{"--output"}, dest: "output", metavar: "{human,json}", choices: []string{"human", "json"},
		help: "Print a text report or JSON with qemu-img's field names. (default: human)"},
}

// inspected is the file a check or info command line names, opened.
type inspected struct {
	f        *os.File
	size     int64
	declared string // the format -f gives; "" when none
	asJSON   bool
}

// openForInspection opens the file a check or info command line names.
// On failure it has already said why and returns false.
func openForInspection(e env, p *parsed) (in inspected, ok bool) {
	path := p.positionals[0]
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v\n", prog, err)
		return in, false
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("not a regular file")
	}
	if err != nil {
		f.Close()
		fmt.Fprintf(e.stderr, "%s: %s: %v\n", prog, path, err)
		return in, false
	}
	return inspected{f: f, size: st.Size(), declared: p.values["format"], asJSON: p.values["output"] == "json"}, true
}

// The exit codes of check, as qemu-img check's (qemu-img.c img_check).
const (
	checkClean       = 0
	checkIncomplete  = 1  // the check could not complete: no such file, unreadable, malformed
	checkCorrupt     = 2  // corruption (errors) found
	checkLeaks       = 3  // only leaked clusters found
	checkUnsupported = 63 // the format has no consistency check
)

func checkCommand() command {
	return command{
		name:    "check",
		summary: "Check the consistency of an image (like qemu-img check)",
		description: `Check the consistency of an image, natively, with qemu-img check's figures:
reference counts against references, leaks, overlaps, out-of-range offsets and
COPIED flags.`,
		args:    []positional{{name: "filename", help: "The image to check.", complete: completeFile}},
		options: inspectOptions,
		epilog: `exit codes (as qemu-img check's):
  0    no errors were found
  1    the check could not complete (no such file, an unreadable or malformed
       image)
  2    the image is corrupted
  3    the image only leaks clusters (space is wasted, no data is harmed)
  63   the image's format has no consistency check (raw)
`,
		run: runCheck,
	}
}

func infoCommand() command {
	return command{
		name:    "info",
		summary: "Describe an image (like qemu-img info)",
		description: `Describe an image: format, virtual size, disk usage and the format's own
details, as qemu-img info does, line for line (--output json uses qemu-img's
field names); with --as-input, also whether single and convert would take it
as an input.`,
		args: []positional{{name: "filename", help: "The image to describe.", complete: completeFile}},
		options: append(append([]option(nil), inspectOptions...), option{names: []string{"--as-input"}, dest: "as_input",
			help: "Also say whether single and convert would take the image as an input, and if not why (a backing file, encryption, ...)."}),
		epilog: `exit codes: 0 described, 1 no such file, 2 not an image that can be described.
`,
		run: runInfo,
	}
}

func runCheck(ctx context.Context, e env, p *parsed) int {
	in, ok := openForInspection(e, p)
	if !ok {
		return checkIncomplete
	}
	f, asJSON := in.f, in.asJSON
	defer f.Close()
	name, err := inspect.Detect(f, in.size, in.declared)
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %s: %v\n", prog, f.Name(), err)
		return checkIncomplete
	}
	format, _ := disk.Lookup(name)
	if format.Check == nil {
		fmt.Fprintf(e.stderr, "%s: %s: This image format (%s) does not support checks\n", prog, f.Name(), format.Name)
		return checkUnsupported
	}
	report, err := format.Check(f, in.size)
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %s: %v\n", prog, f.Name(), err)
		return checkIncomplete
	}
	if asJSON {
		out := struct {
			Filename string `json:"filename"`
			disk.CheckReport
		}{f.Name(), report}
		b, _ := json.MarshalIndent(out, "", "    ")
		fmt.Fprintf(e.stdout, "%s\n", b)
	} else {
		for _, p := range report.Problems {
			fmt.Fprintln(e.stdout, p)
		}
		switch {
		case report.OK():
			fmt.Fprintln(e.stdout, "No errors were found on the image.")
		default:
			if n := report.Errors + report.Corruptions; n > 0 {
				fmt.Fprintf(e.stdout, "\n%d errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n", n)
			}
			if report.Leaks > 0 {
				fmt.Fprintf(e.stdout, "\n%d leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n", report.Leaks)
			}
		}
		// As qemu-img check prints them: the statistics only when some cluster
		// is allocated, the end offset whenever the format has one (an empty
		// Parallels image has one; QED has none).
		if report.TotalClusters > 0 && report.AllocatedClusters > 0 {
			pct := func(n int64) float64 { return float64(n) * 100 / float64(max(report.TotalClusters, 1)) }
			alloc := float64(0)
			if report.AllocatedClusters > 0 {
				alloc = 100 * float64(report.FragmentedClusters) / float64(report.AllocatedClusters)
			}
			comp := float64(0)
			if report.AllocatedClusters > 0 {
				comp = 100 * float64(report.CompressedClusters) / float64(report.AllocatedClusters)
			}
			fmt.Fprintf(e.stdout, "%d/%d = %.2f%% allocated, %.2f%% fragmented, %.2f%% compressed clusters\n",
				report.AllocatedClusters, report.TotalClusters, pct(report.AllocatedClusters), alloc, comp)
		}
		if report.ImageEndOffset > 0 {
			fmt.Fprintf(e.stdout, "Image end offset: %d\n", report.ImageEndOffset)
		}
	}
	switch {
	case report.Errors+report.Corruptions > 0:
		return checkCorrupt
	case report.Leaks > 0:
		return checkLeaks
	}
	return checkClean
}

// qemuInfo mirrors qemu-img info --output=json.
type qemuInfo struct {
	VirtualSize    int64           `json:"virtual-size"`
	Filename       string          `json:"filename"`
	ClusterSize    int64           `json:"cluster-size,omitempty"`
	Format         string          `json:"format"`
	ActualSize     int64           `json:"actual-size"`
	BackingFile    string          `json:"backing-filename,omitempty"`
	BackingFormat  string          `json:"backing-filename-format,omitempty"`
	FormatSpecific *formatSpecific `json:"format-specific,omitempty"`
	Encrypted      bool            `json:"encrypted,omitempty"`
	DirtyFlag      *bool           `json:"dirty-flag,omitempty"` // nil where qemu-img prints none
}

// formatSpecific renders a format's disk.Specific as qemu-img info
// --output=json does: {"type": ..., "data": {...}}, the data's keys in the
// format's order.
type formatSpecific disk.Specific

func (s *formatSpecific) MarshalJSON() ([]byte, error) {
	typ, err := json.Marshal(s.Type)
	if err != nil {
		return nil, err
	}
	data, err := fieldsJSON(s.Fields)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, `{"type":%s,"data":%s}`, typ, data), nil
}

// fieldsJSON encodes fields as a JSON object whose keys keep their order.
func fieldsJSON(fields []disk.Field) ([]byte, error) {
	out := []byte{'{'}
	for i, f := range fields {
		if i > 0 {
			out = append(out, ',')
		}
		key, err := json.Marshal(f.Key)
		if err != nil {
			return nil, err
		}
		var value []byte
		switch v := f.Value.(type) {
		case []disk.Field:
			value, err = fieldsJSON(v)
		case [][]disk.Field:
			value = []byte{'['}
			for i, item := range v {
				if i > 0 {
					value = append(value, ',')
				}
				b, err := fieldsJSON(item)
				if err != nil {
					return nil, err
				}
				value = append(value, b...)
			}
			value = append(value, ']')
		default:
			value, err = json.Marshal(f.Value)
		}
		if err != nil {
			return nil, err
		}
		out = append(append(append(out, key...), ':'), value...)
	}
	return append(out, '}'), nil
}

// withFileName returns fields with every disk.FileName replaced by name,
// copied where it changes.
func withFileName(fields []disk.Field, name string) []disk.Field {
	out := make([]disk.Field, len(fields))
	for i, f := range fields {
		switch v := f.Value.(type) {
		case disk.FileName:
			f.Value = name
		case []disk.Field:
			f.Value = withFileName(v, name)
		case [][]disk.Field:
			items := make([][]disk.Field, len(v))
			for j, item := range v {
				items[j] = withFileName(item, name)
			}
			f.Value = items
		}
		out[i] = f
	}
	return out
}

// printFields prints fields as qemu-img info does: "label: value", nested
// objects as their label and their fields indented once more.
func printFields(w io.Writer, fields []disk.Field, indent string) {
	for _, f := range fields {
		switch v := f.Value.(type) {
		case []disk.Field:
			fmt.Fprintf(w, "%s%s:\n", indent, f.Label)
			printFields(w, v, indent+"    ")
			continue
		case [][]disk.Field:
			fmt.Fprintf(w, "%s%s:\n", indent, f.Label)
			for i, item := range v {
				fmt.Fprintf(w, "%s    [%d]:\n", indent, i)
				printFields(w, item, indent+"        ")
			}
			continue
		}
		fmt.Fprintf(w, "%s%s: %v\n", indent, f.Label, f.Value)
	}
}

func runInfo(ctx context.Context, e env, p *parsed) int {
	in, ok := openForInspection(e, p)
	if !ok {
		return genvm.CodePathNotFound
	}
	f := in.f
	defer f.Close()
	// Inspection describes the image as far as its headers can be decoded,
	// and says whether single and convert would take it as an input
	// (SECURITY.md): info describes images that are refused.
	rep, refusal := inspect.InspectAt(f, in.size, in.declared, inspect.Policy{})
	info := rep.Info
	if info.Format == "" {
		err := refusal
		if err == nil {
			err = fmt.Errorf("this is a %s image, which this version recognises but cannot read yet", rep.Format)
		}
		fmt.Fprintf(e.stderr, "%s: %s: %v\n", prog, f.Name(), err)
		return genvm.CodeLoadFailed
	}
	if info.Specific != nil {
		sp := *info.Specific
		sp.Fields = withFileName(sp.Fields, f.Name())
		info.Specific = &sp
	}
	q := qemuInfo{VirtualSize: info.VirtualSize, Filename: f.Name(), ClusterSize: info.ClusterSize, Format: info.Format,
		BackingFile: info.BackingFile, BackingFormat: info.BackingFormat, FormatSpecific: (*formatSpecific)(info.Specific),
		Encrypted: info.Encrypted}
	if !info.NoDirtyFlag {
		q.DirtyFlag = &info.Dirty
	}
	if st, err := f.Stat(); err == nil {
		q.ActualSize = allocatedBytes(st)
	}
	if in.asJSON {
		b, _ := json.MarshalIndent(q, "", "    ")
		fmt.Fprintf(e.stdout, "%s\n", b)
		return 0
	}
	fmt.Fprintf(e.stdout, "image: %s\nfile format: %s\nvirtual size: %s (%d bytes)\ndisk size: %s\n",
		q.Filename, q.Format, size.FormatQemu(q.VirtualSize), q.VirtualSize, size.FormatQemu(q.ActualSize))
	if q.Encrypted {
		fmt.Fprintln(e.stdout, "encrypted: yes")
	}
	if q.ClusterSize > 0 {
		fmt.Fprintf(e.stdout, "cluster_size: %d\n", q.ClusterSize)
	}
	if q.BackingFile != "" {
		fmt.Fprintf(e.stdout, "backing file: %s\n", q.BackingFile)
		if q.BackingFormat != "" {
			fmt.Fprintf(e.stdout, "backing file format: %s\n", q.BackingFormat)
		}
	}
	if info.Snapshots > 0 {
		fmt.Fprintf(e.stdout, "snapshots: %d\n", info.Snapshots)
	}
	if sp := info.Specific; sp != nil {
		fmt.Fprintln(e.stdout, "Format specific information:")
		printFields(e.stdout, sp.Fields, "    ")
	}
	if info.Dirty {
		fmt.Fprintln(e.stdout, "dirty flag: yes")
	}
	switch format, _ := disk.Lookup(rep.Format); {
	case !p.switches["as_input"]:
	case refusal != nil:
		fmt.Fprintf(e.stdout, "as an input: refused: %v\n", refusal)
	case format.Open == nil:
		fmt.Fprintf(e.stdout, "as an input: accepted by inspection, but this version cannot read %s images yet\n", rep.Format)
	default:
		fmt.Fprintln(e.stdout, "as an input: accepted by inspection")
	}
	return 0
}
