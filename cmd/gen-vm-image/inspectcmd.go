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
	{names: []string{"-f", "--format"}, dest: "format", metavar: "FORMAT",
		help: "The image's format; it must agree with the content. (default: detected)"},
	{names: []string{"--output"}, dest: "output", metavar: "{human,json}",
		help: "Print a text report or JSON with qemu-img's field names. (default: human)"},
}

func inspectUsage(cmd string) string {
	return fmt.Sprintf("usage: %s %s [-h] [-f FORMAT] [--output {human,json}] filename\n", prog, cmd)
}

// inspected is the file a check or info command line names, opened.
type inspected struct {
	f        *os.File
	size     int64
	declared string // the format -f gives; "" when none
	asJSON   bool
}

// openForInspection parses a check/info command line and opens the file.
// On failure it has already printed and returns the exit code.
func openForInspection(e env, cmd, help string, args []string) (in inspected, code int, ok bool) {
	p, err := parseArgs(args, inspectOptions)
	if err != nil {
		return in, usageFail(e, inspectUsage(cmd), err), false
	}
	if p.help {
		fmt.Fprint(e.stdout, inspectUsage(cmd)+"\n"+help+"\noptions:\n  -h, --help            show this help message and exit\n"+formatOptions(inspectOptions))
		return in, 0, false
	}
	if len(p.positionals) != 1 {
		return in, usageFail(e, inspectUsage(cmd), fmt.Errorf("expected exactly one filename")), false
	}
	switch p.values["output"] {
	case "", "human":
	case "json":
		in.asJSON = true
	default:
		return in, usageFail(e, inspectUsage(cmd), fmt.Errorf("argument --output: invalid choice: %q (choose from 'human', 'json')", p.values["output"])), false
	}
	path := p.positionals[0]
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v\n", prog, err)
		return in, genvm.CodePathNotFound, false
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("not a regular file")
	}
	if err != nil {
		f.Close()
		fmt.Fprintf(e.stderr, "%s: %s: %v\n", prog, path, err)
		return in, genvm.CodeLoadFailed, false
	}
	return inspected{f: f, size: st.Size(), declared: p.values["format"], asJSON: in.asJSON}, 0, true
}

const checkHelp = `Check the consistency of an image, natively (qemu-img check's figures):
reference counts against references, leaks, overlaps, out-of-range offsets and
COPIED flags. Exit code: 0 clean, 8 errors or leaks found, 2 unreadable.
`

func runCheck(ctx context.Context, e env, args []string) int {
	in, code, ok := openForInspection(e, "check", checkHelp, args)
	if !ok {
		return code
	}
	f, asJSON := in.f, in.asJSON
	defer f.Close()
	name, err := inspect.Detect(f, in.size, in.declared)
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %s: %v\n", prog, f.Name(), err)
		return genvm.CodeLoadFailed
	}
	format, _ := disk.Lookup(name)
	if format.Check == nil {
		fmt.Fprintf(e.stderr, "%s: %s: %s images have no consistency check\n", prog, f.Name(), format.Name)
		return genvm.CodeCheck
	}
	report, err := format.Check(f, in.size)
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %s: %v\n", prog, f.Name(), err)
		return genvm.CodeLoadFailed
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
		if report.TotalClusters > 0 {
			pct := func(n int64) float64 { return float64(n) * 100 / float64(max(report.TotalClusters, 1)) }
			alloc := float64(0)
			if report.AllocatedClusters > 0 {
				alloc = 100 * float64(report.FragmentedClusters) / float64(report.AllocatedClusters)
			}
			comp := float64(0)
			if report.AllocatedClusters > 0 {
				comp = 100 * float64(report.CompressedClusters) / float64(report.AllocatedClusters)
			}
			fmt.Fprintf(e.stdout, "%d/%d = %.2f%% allocated, %.2f%% fragmented, %.2f%% compressed clusters\nImage end offset: %d\n",
				report.AllocatedClusters, report.TotalClusters, pct(report.AllocatedClusters), alloc, comp, report.ImageEndOffset)
		}
	}
	if !report.OK() {
		return genvm.CodeCheck
	}
	return 0
}

const infoHelp = `Describe an image: format, virtual size, disk usage and the format's own
details, as qemu-img info does (--output json uses qemu-img's field names).
`

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
	DirtyFlag      bool            `json:"dirty-flag"`
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
		if nested, ok := f.Value.([]disk.Field); ok {
			value, err = fieldsJSON(nested)
		} else {
			value, err = json.Marshal(f.Value)
		}
		if err != nil {
			return nil, err
		}
		out = append(append(append(out, key...), ':'), value...)
	}
	return append(out, '}'), nil
}

// printFields prints fields as qemu-img info does: "label: value", nested
// objects as their label and their fields indented once more.
func printFields(w io.Writer, fields []disk.Field, indent string) {
	for _, f := range fields {
		if nested, ok := f.Value.([]disk.Field); ok {
			fmt.Fprintf(w, "%s%s:\n", indent, f.Label)
			printFields(w, nested, indent+"    ")
			continue
		}
		fmt.Fprintf(w, "%s%s: %v\n", indent, f.Label, f.Value)
	}
}

func runInfo(ctx context.Context, e env, args []string) int {
	in, code, ok := openForInspection(e, "info", infoHelp, args)
	if !ok {
		return code
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
	q := qemuInfo{VirtualSize: info.VirtualSize, Filename: f.Name(), ClusterSize: info.ClusterSize, Format: info.Format,
		BackingFile: info.BackingFile, BackingFormat: info.BackingFormat, FormatSpecific: (*formatSpecific)(info.Specific),
		Encrypted: info.Encrypted, DirtyFlag: info.Dirty}
	if st, err := f.Stat(); err == nil {
		q.ActualSize = allocatedBytes(st)
	}
	if in.asJSON {
		b, _ := json.MarshalIndent(q, "", "    ")
		fmt.Fprintf(e.stdout, "%s\n", b)
		return 0
	}
	fmt.Fprintf(e.stdout, "image: %s\nfile format: %s\nvirtual size: %s (%d bytes)\ndisk size: %s\n",
		q.Filename, q.Format, size.Format(q.VirtualSize), q.VirtualSize, size.Format(q.ActualSize))
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
	if q.DirtyFlag {
		fmt.Fprintln(e.stdout, "dirty flag: yes")
	}
	switch format, _ := disk.Lookup(rep.Format); {
	case refusal != nil:
		fmt.Fprintf(e.stdout, "as an input: refused: %v\n", refusal)
	case format.Open == nil:
		fmt.Fprintf(e.stdout, "as an input: accepted by inspection, but this version cannot read %s images yet\n", rep.Format)
	default:
		fmt.Fprintln(e.stdout, "as an input: accepted by inspection")
	}
	return 0
}
