package arch

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/ucphhpc/gen-vm-image-go/internal/suggest"

	"github.com/ucphhpc/gen-vm-image-go/checksum"
	"github.com/ucphhpc/gen-vm-image-go/internal/location"
	"github.com/ucphhpc/gen-vm-image-go/size"
)

// parser walks the YAML node tree, collecting problems instead of stopping
// at the first.
type parser struct {
	file     string
	opts     options
	problems []Problem
	warnings []string
	merges   int // merged mappings expanded so far, against maxMerges
}

func (p *parser) problem(n *yaml.Node, kind Kind, path, format string, args ...any) {
	pr := Problem{Path: path, Msg: fmt.Sprintf(format, args...), Kind: kind}
	if n != nil {
		pr.Line, pr.Column = n.Line, n.Column
	}
	p.problems = append(p.problems, pr)
}

func (p *parser) invalid(n *yaml.Node, path, format string, args ...any) {
	p.problem(n, Invalid, path, format, args...)
}

func (p *parser) warn(n *yaml.Node, path, format string, args ...any) {
	w := Problem{Line: n.Line, Path: path, Msg: fmt.Sprintf(format, args...)}
	p.warnings = append(p.warnings, w.format(p.file))
}

// unknownKey warns of a key the file format does not have: ignored, as
// the reference ignores it, but often a typo worth a "did you mean".
func (p *parser) unknownKey(n *yaml.Node, path, name string, known ...string) {
	if s := suggest.Closest(name, known); s != "" {
		p.warn(n, path, "unknown key %q ignored; did you mean %q?", name, s)
		return
	}
	p.warn(n, path, "unknown key %q ignored", name)
}

// yamlLine pulls the line out of yaml.v3's "yaml: line 3: ..." errors.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (p *parser) syntax(data []byte, err error) {
	msg := err.Error()
	if line, why, ok := indentProblem(data); ok {
		cause := strings.TrimPrefix(msg, "yaml: ")
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			cause = m[2]
		}
		p.problems = append(p.problems, Problem{Line: line, Msg: "not valid YAML: " + why + " (the parser said: " + cause + ")", Kind: Syntax})
		return
	}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		p.problems = append(p.problems, Problem{Line: line, Msg: "not valid YAML: " + m[2], Kind: Syntax})
		return
	}
	p.problems = append(p.problems, Problem{Msg: "not valid YAML: " + strings.TrimPrefix(msg, "yaml: "), Kind: Syntax})
}

func (p *parser) parse(data []byte) *Architecture {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.problem(nil, Syntax, "", "the file is empty; expected a mapping with owner and images")
		} else {
			p.syntax(data, err)
		}
		return nil
	}
	// PyYAML's yaml.load refuses a stream of several documents; so do we,
	// rather than silently reading only the first.
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		p.problem(&next, Syntax, "", "the file holds more than one YAML document (---); put everything in one")
	case !errors.Is(err, io.EOF):
		p.syntax(data, err)
	}

	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			p.problem(root, Syntax, "", "the file is empty; expected a mapping with owner and images")
			return nil
		}
		root = root.Content[0]
	}
	root = deref(root)
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		p.problem(root, Syntax, "", "the file is empty; expected a mapping with owner and images")
		return nil
	}
	if root.Kind != yaml.MappingNode {
		p.invalid(root, "", "the file must be a mapping with owner and images, got %s", describe(root))
		return nil
	}

	a := &Architecture{}
	var ownerSeen, imagesSeen bool
	for _, e := range p.entries(root, "") {
		switch e.name {
		case "owner":
			ownerSeen = true
			if s, ok := p.str(e.value, "owner"); ok {
				if strings.TrimSpace(s) == "" {
					p.problem(e.value, Missing, "owner", "is empty")
				}
				a.Owner = s
			}
		case "images":
			imagesSeen = true
			a.Images = p.images(e)
		default:
			p.unknownKey(e.key, "", e.name, "owner", "images")
		}
	}
	if !ownerSeen {
		p.problem(root, Missing, "", `missing required key "owner"`)
	}
	if !imagesSeen {
		p.problem(root, Missing, "", `missing required key "images"`)
	}
	p.checkOutputNames(a.Images)
	a.Warnings = p.warnings
	return a
}

func (p *parser) images(e entry) []Image {
	n := deref(e.value)
	if n.Kind != yaml.MappingNode {
		if isNull(n) {
			p.problem(e.value, Missing, "images", "is empty; it needs at least one image")
		} else {
			p.invalid(e.value, "images", "must be a mapping of image keys to images, got %s", describe(n))
		}
		return nil
	}
	entries := p.entries(n, "images")
	if len(n.Content) == 0 {
		p.problem(e.value, Missing, "images", "is empty; it needs at least one image")
		return nil
	}
	var images []Image
	for _, ie := range entries {
		if img, ok := p.image(ie); ok {
			images = append(images, img)
		}
	}
	return images
}

func (p *parser) image(e entry) (Image, bool) {
	path := "images." + e.name
	img := Image{Key: e.name, Line: e.key.Line, Format: DefaultFormat}
	n := deref(e.value)
	if n.Kind != yaml.MappingNode {
		p.invalid(e.value, path, "an image must be a mapping with name and size, got %s", describe(n))
		return img, false
	}
	start := len(p.problems)
	var nameSeen, sizeSeen bool
	var optionsAt *yaml.Node // where format_options or compress is, for their problems
	for _, f := range p.entries(n, path) {
		fpath := path + "." + f.name
		switch f.name {
		case "name":
			nameSeen = true
			if s, ok := p.str(f.value, fpath); ok {
				img.Name = s
				p.fileComponent(f.value, fpath, "name", s)
			}
		case "size":
			sizeSeen = true
			if s, ok := p.str(f.value, fpath); ok {
				img.Size = s
				b, err := size.Parse(s)
				if err != nil {
					p.invalid(f.value, fpath, "%s", err)
				}
				img.SizeBytes = b
			}
		case "version":
			// An empty version means none, as in the Python tool.
			if isNull(deref(f.value)) {
				continue
			}
			if s, ok := p.str(f.value, fpath); ok {
				img.Version = s
				p.fileComponent(f.value, fpath, "version", s)
			}
		case "format":
			if s, ok := p.optionalFormat(f, fpath, false); ok {
				img.Format = s
			}
		case "input":
			img.Input = p.input(f, fpath)
		case "format_options":
			img.FormatOptions = p.formatOptions(f.value, fpath)
			optionsAt = f.value
		case "compress":
			if v, ok := p.boolean(f.value, fpath); ok {
				img.Compress = v
				if optionsAt == nil {
					optionsAt = f.value
				}
			}
		default:
			p.unknownKey(f.key, path, f.name, "name", "size", "version", "format", "format_options", "compress", "input")
		}
	}
	if check := p.opts.checkOutput; check != nil && optionsAt != nil && len(p.problems) == start {
		if err := check(img.Format, img.FormatOptions, img.Compress); err != nil {
			p.invalid(optionsAt, path, "%v", err)
		}
	}
	if !nameSeen {
		p.problem(e.key, Missing, path, `missing required key "name"`)
	}
	if !sizeSeen {
		p.problem(e.key, Missing, path, `missing required key "size"`)
	}
	return img, len(p.problems) == start
}

func (p *parser) input(e entry, path string) *Input {
	n := deref(e.value)
	if isNull(n) {
		// The Python tool builds a blank image then; say so.
		p.warn(e.key, path, "is empty: the image is built blank")
		return nil
	}
	in := &Input{Line: e.key.Line}
	if n.Kind != yaml.MappingNode {
		p.invalid(e.value, path, "must be a mapping with path, url or oci, got %s", describe(n))
		return in
	}
	// The keys that say where the input is, in the order they came.
	var sources []entry
	for _, f := range p.entries(n, path) {
		fpath := path + "." + f.name
		switch f.name {
		case "path":
			sources = append(sources, f)
			if s, ok := p.str(f.value, fpath); ok {
				if s == "" {
					p.problem(f.value, Missing, fpath, "is empty")
				}
				in.Path = s
			}
		case "url":
			sources = append(sources, f)
			in.URLs = p.urls(f.value, fpath)
			if len(in.URLs) > 0 {
				in.URL = in.URLs[0]
			}
		case "oci":
			sources = append(sources, f)
			if s, ok := p.str(f.value, fpath); ok {
				in.OCI = p.reference(f.value, fpath, s)
			}
		case "format":
			if s, ok := p.optionalFormat(f, fpath, true); ok {
				in.Format = s
			}
		case "checksum":
			in.Checksum = p.checksum(f, fpath)
		case "disk":
			if v, ok := p.positiveInt(f.value, fpath, 1<<16); ok {
				in.Disk = int(v)
			}
		default:
			p.unknownKey(f.key, path, f.name, "path", "url", "oci", "format", "checksum", "disk")
		}
	}
	switch {
	case len(sources) > 1:
		p.invalid(sources[1].key, path, "has both %s (line %d) and %s; give only one", sources[0].name, sources[0].key.Line, sources[1].name)
	case len(sources) == 0:
		p.problem(e.key, Missing, path, `needs a "path", a "url" or an "oci"`)
	}
	return in
}

// reference reads oci: an image in a registry, REGISTRY/REPOSITORY:TAG or
// @sha256:DIGEST, with or without the oci:// prefix, which is dropped.
func (p *parser) reference(n *yaml.Node, path, s string) string {
	if len(s) >= len(ociScheme) && strings.EqualFold(s[:len(ociScheme)], ociScheme) {
		s = s[len(ociScheme):]
	}
	if s == "" {
		p.problem(n, Missing, path, "is empty")
		return ""
	}
	if p.opts.checkReference != nil {
		if err := p.opts.checkReference(s); err != nil {
			p.invalid(n, path, "%v", err)
		}
	}
	return s
}

// urls reads url: one URL, or a list of mirrors.
func (p *parser) urls(n *yaml.Node, path string) []string {
	d := deref(n)
	if d.Kind != yaml.SequenceNode {
		if s, ok := p.str(n, path); ok && p.checkURL(n, path, s) {
			return []string{s}
		}
		return nil
	}
	if len(d.Content) == 0 {
		p.problem(n, Missing, path, "is an empty list; give at least one URL")
		return nil
	}
	var urls []string
	for i, item := range d.Content {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		if s, ok := p.str(item, ipath); ok && p.checkURL(item, ipath, s) {
			urls = append(urls, s)
		}
	}
	return urls
}

func (p *parser) checkURL(n *yaml.Node, path, s string) bool {
	if location.CheckURL(s) != nil {
		p.invalid(n, path, "%q is not an http or https URL", s)
		return false
	}
	return true
}

func (p *parser) checksum(e entry, path string) *Checksum {
	n := deref(e.value)
	if n.Kind != yaml.MappingNode {
		if isNull(n) {
			p.problem(e.value, Missing, path, "is empty; give type and value, or remove it")
		} else {
			p.invalid(e.value, path, "must be a mapping with type and value, got %s", describe(n))
		}
		return nil
	}
	c := &Checksum{Spec: checksum.Spec{BufferSize: checksum.DefaultBufferSize}, Line: e.key.Line}
	var typeNode, valueNode, fileNode, sigNode, keyNode *yaml.Node
	digestSize := 0
	for _, f := range p.entries(n, path) {
		fpath := path + "." + f.name
		switch f.name {
		case "type":
			typeNode = f.value
			if s, ok := p.str(f.value, fpath); ok {
				c.Type = s
				if sz, err := checksum.Size(s); err != nil {
					p.invalid(f.value, fpath, "%s", err)
				} else {
					digestSize = sz
				}
			}
		case "value":
			valueNode = f.value
			if s, ok := p.str(f.value, fpath); ok {
				c.Value = strings.TrimSpace(s)
			}
		case "file", "signature", "key":
			if s, ok := p.str(f.value, fpath); ok {
				if s == "" {
					p.problem(f.value, Missing, fpath, "is empty")
				}
				switch f.name {
				case "file":
					fileNode, c.File = f.value, s
				case "signature":
					sigNode, c.Signature = f.value, s
				case "key":
					keyNode, c.Key = f.value, s
				}
			}
		case "buffer_size":
			if v, ok := p.positiveInt(f.value, fpath, math.MaxInt); ok {
				c.BufferSize = int(v)
			}
		case "read_bytes":
			if v, ok := p.positiveInt(f.value, fpath, math.MaxInt64); ok {
				c.ReadBytes = v
			}
		default:
			p.unknownKey(f.key, path, f.name, "type", "value", "file", "signature", "key", "buffer_size", "read_bytes")
		}
	}
	switch {
	case valueNode != nil && fileNode != nil:
		p.invalid(fileNode, path, "has both value (line %d) and file; give only one", valueNode.Line)
	case valueNode == nil && fileNode == nil:
		p.problem(e.key, Missing, path, `missing required key "value" (or "file", a checksum file that lists it)`)
	case valueNode != nil && typeNode == nil:
		p.problem(e.key, Missing, path, `missing required key "type"`)
	}
	if valueNode != nil && digestSize > 0 && c.Value != "" && !isHexOfLen(c.Value, 2*digestSize) {
		p.invalid(valueNode, path+".value", "%q is not a %s digest: expected %d hexadecimal digits", c.Value, c.Type, 2*digestSize)
	}
	if valueNode != nil && c.Value == "" && deref(valueNode).Kind == yaml.ScalarNode && !isNull(deref(valueNode)) {
		p.problem(valueNode, Missing, path+".value", "is empty")
	}
	if sigNode != nil && fileNode == nil {
		p.invalid(sigNode, path+".signature", `signs a checksum file: give "file" too`)
	}
	if keyNode != nil && fileNode == nil {
		p.invalid(keyNode, path+".key", `verifies a checksum file's signature: give "file" too`)
	}
	return c
}

func isHexOfLen(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// positiveInt reads a YAML integer in [1, max]. A quoted number is refused,
// as the Python tool refuses a non-int.
func (p *parser) positiveInt(n *yaml.Node, path string, max int64) (int64, bool) {
	d := deref(n)
	if d.Kind != yaml.ScalarNode || d.ShortTag() != "!!int" {
		p.invalid(n, path, "must be a positive integer, got %s", describe(d))
		return 0, false
	}
	var v int64
	if err := d.Decode(&v); err != nil || v > max {
		p.invalid(n, path, "is too large: %s (at most %d)", d.Value, max)
		return 0, false
	}
	if v < 1 {
		p.invalid(n, path, "must be a positive integer, got %s", d.Value)
		return 0, false
	}
	return v, true
}

// formatOptions reads format_options: a mapping of option names to
// scalars, kept as written; true and false become on and off.
func (p *parser) formatOptions(n *yaml.Node, path string) map[string]string {
	d := deref(n)
	if isNull(d) {
		return nil
	}
	if d.Kind != yaml.MappingNode {
		p.invalid(n, path, "must be a mapping of options (subformat: fixed), got %s", describe(d))
		return nil
	}
	out := map[string]string{}
	for _, f := range p.entries(d, path) {
		v := deref(f.value)
		switch {
		case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!bool":
			out[f.name] = map[bool]string{true: "on", false: "off"}[strings.EqualFold(v.Value, "true")]
		default:
			if s, ok := p.str(f.value, path+"."+f.name); ok {
				out[f.name] = s
			}
		}
	}
	return out
}

// boolean reads true or false.
func (p *parser) boolean(n *yaml.Node, path string) (bool, bool) {
	d := deref(n)
	if d.Kind == yaml.ScalarNode && d.ShortTag() == "!!bool" {
		return strings.EqualFold(d.Value, "true"), true
	}
	p.invalid(n, path, "must be true or false, got %s", describe(d))
	return false, false
}

// str reads a scalar as written: strings, and numbers and dates kept as
// their text ("9.4", "08"), never re-rendered.
func (p *parser) str(n *yaml.Node, path string) (string, bool) {
	d := deref(n)
	if d.Kind == yaml.ScalarNode {
		switch d.ShortTag() {
		case "!!str", "!!int", "!!float", "!!timestamp":
			return d.Value, true
		}
	}
	if isNull(d) {
		p.problem(n, Missing, path, "has no value")
		return "", false
	}
	msg := "must be a string, got %s"
	if d.Kind == yaml.ScalarNode && d.ShortTag() == "!!bool" {
		msg += "; quote it if it is meant as text"
	}
	p.invalid(n, path, msg, describe(d))
	return "", false
}

// fileComponent refuses names and versions that would put the image outside
// the output directory, hide it there, or make an unreadable file name.
func (p *parser) fileComponent(n *yaml.Node, path, what, s string) {
	if err := CheckFileComponent(what, s); err != nil {
		kind := Invalid
		if s == "" {
			kind = Missing
		}
		p.problem(n, kind, path, "%v", err)
	}
}

// CheckFileComponent refuses an image name, version or format that would
// put the output file outside its directory or hide it there. The CLI and
// the JSON request use it too, so that a name gets the same verdict however
// it is given.
func CheckFileComponent(what, s string) error {
	switch {
	case s == "" && what == "name":
		return errors.New("is empty")
	case strings.ContainsAny(s, `/\`):
		return fmt.Errorf("%q contains a path separator; the %s must be a plain file name part", s, what)
	case strings.Contains(s, ".."):
		return fmt.Errorf("%q contains \"..\", which could escape the output directory", s)
	case what == "name" && strings.HasPrefix(s, "."):
		return fmt.Errorf("%q starts with a dot; the image would be hidden in the output directory", s)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return fmt.Errorf("%q contains a control character (NUL, newline, ...)", s)
	}
	return nil
}

// optionalFormat reads a format key that may be null (meaning the default
// for an image, detection for an input).
func (p *parser) optionalFormat(f entry, path string, input bool) (string, bool) {
	if isNull(deref(f.value)) {
		return "", false
	}
	s, ok := p.str(f.value, path)
	if ok {
		p.format(f.value, path, s, input)
	}
	return s, ok
}

func (p *parser) format(n *yaml.Node, path, s string, input bool) {
	switch {
	case input && len(p.opts.inputFormats) > 0:
		if !slices.Contains(p.opts.inputFormats, s) {
			p.invalid(n, path, "unknown format %q; this version reads %s", s, strings.Join(p.opts.readable, ", "))
		}
		return
	case !input && len(p.opts.outputFormats) > 0:
		if !slices.Contains(p.opts.outputFormats, s) {
			p.invalid(n, path, "%q is not a format this version writes; use one of %s", s, strings.Join(p.opts.outputFormats, ", "))
		}
		return
	}
	if s == "" {
		p.problem(n, Missing, path, "is empty")
		return
	}
	p.fileComponent(n, path, "format", s)
}

// checkOutputNames reports images that would write the same file: the
// second would silently be skipped as "already exists".
func (p *parser) checkOutputNames(images []Image) {
	first := map[string]Image{}
	for _, img := range images {
		name := OutputName(img.Name, img.Version, img.Format)
		if prev, ok := first[name]; ok {
			p.problem(&yaml.Node{Line: img.Line}, Invalid, "images."+img.Key,
				"writes the same file %q as images.%s (line %d)", name, prev.Key, prev.Line)
			continue
		}
		first[name] = img
	}
}

// entry is one key: value pair of a mapping.
type entry struct {
	name       string
	key, value *yaml.Node
}

// maxMerges bounds the merged mappings expanded in a whole file, so that
// aliases cannot multiply the work (a "billion laughs" made of << keys).
// Within one mapping each merged mapping is taken in once, which also ends
// cycles (an anchor merged into itself).
const maxMerges = 10000

// entries lists a mapping's pairs in order, reporting duplicate and
// non-scalar keys, with YAML merge keys ("<<: *base", which PyYAML honours)
// expanded: explicit keys win over merged ones, earlier merges over later.
func (p *parser) entries(m *yaml.Node, path string) []entry {
	c := collector{seen: map[string]*yaml.Node{}, expanded: map[*yaml.Node]bool{m: true}}
	p.collect(&c, m, path, false)
	return c.out
}

// collector is the state of one entries call.
type collector struct {
	seen     map[string]*yaml.Node // key name -> its first key node
	expanded map[*yaml.Node]bool   // merged mappings already taken in
	out      []entry
}

func (p *parser) collect(c *collector, m *yaml.Node, path string, merged bool) {
	var merges []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		dk := deref(k)
		if dk.Kind == yaml.ScalarNode && dk.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if dk.Kind != yaml.ScalarNode || isNull(dk) {
			if !merged {
				p.invalid(k, path, "keys must be plain names, got %s", describe(dk))
			}
			continue
		}
		if prev, ok := c.seen[dk.Value]; ok {
			if !merged {
				p.invalid(k, join(path, dk.Value), "duplicate key (first at line %d)", prev.Line)
			}
			continue
		}
		c.seen[dk.Value] = k
		c.out = append(c.out, entry{name: dk.Value, key: k, value: v})
	}
	for _, v := range merges {
		d := deref(v)
		var sources []*yaml.Node
		switch d.Kind {
		case yaml.SequenceNode:
			for _, item := range d.Content {
				sources = append(sources, deref(item))
			}
		default:
			sources = []*yaml.Node{d}
		}
		for _, src := range sources {
			switch {
			case src.Kind != yaml.MappingNode:
				p.invalid(v, path, "a merge key (<<) needs a mapping or a list of mappings, got %s", describe(src))
			case c.expanded[src]:
				// Merging a mapping twice adds nothing: its keys are all seen.
			case p.merges >= maxMerges:
				if p.merges == maxMerges {
					p.invalid(v, path, "merge keys (<<) expand to too much; the file uses more than %d merges", maxMerges)
					p.merges++ // report once
				}
				return
			default:
				p.merges++
				c.expanded[src] = true
				p.collect(c, src, path, true)
			}
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// maxAliasChain bounds alias resolution; yaml.v3 refuses unknown anchors,
// so a chain only ends in a node, but stay defensive.
const maxAliasChain = 64

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < maxAliasChain; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node is, for "got ..." in messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch tag := n.ShortTag(); tag {
		case "!!null":
			return "nothing (null)"
		case "!!bool":
			return fmt.Sprintf("a boolean (%s)", n.Value)
		case "!!int", "!!float":
			return fmt.Sprintf("a number (%s)", n.Value)
		case "!!str":
			return fmt.Sprintf("a string (%q)", n.Value)
		default:
			return fmt.Sprintf("a value tagged %s", tag)
		}
	}
	return "an unresolved alias"
}
