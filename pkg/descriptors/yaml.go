package descriptors

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// This file reads YAML nodes: documents, syntax errors, aliases, mappings
// and scalars, keeping every node's line for problems. parse.go gives the
// nodes their meaning.

// yamlLine finds the line number in yaml.v3's syntax error messages.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// decodeYAML returns the file's first YAML document, or nil for an empty
// file. A second non-empty document is an error: each file is one domain, and
// the reference would silently ignore it.
func decodeYAML(data []byte) (doc *yaml.Node, err error) {
	// yaml.v3 reports syntax errors by panicking internally and recovering;
	// this recover only guards against a bug in it turning a bad file into a
	// crash of the whole service.
	defer func() {
		if r := recover(); r != nil {
			doc, err = nil, fmt.Errorf("yaml: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var first yaml.Node
	if err := dec.Decode(&first); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			return &first, nil
		}
		if err != nil {
			return nil, err
		}
		if len(next.Content) > 0 && !isNull(next.Content[0]) {
			return nil, fmt.Errorf("yaml: line %d: a second YAML document; a file holds one domain, put the next one in its own file", next.Content[0].Line)
		}
	}
}

// syntaxError records a YAML syntax error. yaml.v3 names no line for errors
// on the first line, names the line where the enclosing block starts rather
// than the offending one for many errors, and puts errors at the end of the
// stream one line past a final newline; all three are mapped onto the line
// that is most likely at fault.
func (p *parser) syntaxError(data []byte, err error) {
	line, msg := splitYAMLError(err)
	lines := bytes.Count(data, []byte("\n"))
	if len(data) > 0 && data[len(data)-1] != '\n' {
		lines++
	}
	if r := refineLine(data, line, msg); r <= lines {
		line = r
	}
	line = max(1, min(line, lines))
	p.problems.add(Problem{File: p.file, Line: line, Msg: "invalid YAML: " + msg, Err: err})
}

// splitYAMLError returns the line yaml.v3 names in an error (1 when it names
// none, which it does for the first line) and the message without it.
func splitYAMLError(err error) (int, string) {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return line, msg[len(m[0]):]
	}
	return 1, strings.TrimPrefix(msg, "yaml: ")
}

// maxRefineLines bounds how far past yaml.v3's line refineLine looks; each
// step parses the file's beginning again.
const maxRefineLines = 200

// refineLine returns the first line at or after from such that the file cut
// after it fails with the same message, which is where the error shows;
// failing that, a line past the end (no refinement).
func refineLine(data []byte, from int, msg string) int {
	// Offset of the end of line from-1 (the cut before line from).
	end := 0
	for l := 1; l < from; l++ {
		i := bytes.IndexByte(data[end:], '\n')
		if i < 0 {
			return math.MaxInt
		}
		end += i + 1
	}
	for l := from; l < from+maxRefineLines && end < len(data); l++ {
		i := bytes.IndexByte(data[end:], '\n')
		if i < 0 {
			end = len(data)
		} else {
			end += i + 1
		}
		if _, err := decodeYAML(data[:end]); err != nil {
			if _, m := splitYAMLError(err); m == msg {
				return l
			}
		}
	}
	return math.MaxInt
}

// add records a problem. Once the node budget is spent the parser only
// unwinds, and what it would report then (fields missing because they were
// not read) is noise.
func (p *parser) add(line int, field, format string, args ...any) {
	if p.exhausted {
		return
	}
	p.problems.add(Problem{File: p.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// visit spends one node of the budget; it reports false (once, with a
// problem) when the budget is spent.
func (p *parser) visit(n *yaml.Node) bool {
	if p.exhausted {
		return false
	}
	p.budget--
	if p.budget < 0 {
		p.add(n.Line, "", "the document expands to too many nodes (aliases referring to aliases, or to themselves)")
		p.exhausted = true
		return false
	}
	return true
}

// resolve follows aliases to the node they name.
func (p *parser) resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		if !p.visit(n) {
			return nil
		}
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return p.resolve(n.Content[0])
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// describe names a node's kind and value for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing (null)"
		}
		v := n.Value
		for i := range v { // cut on a rune boundary
			if i >= 40 {
				v = v[:i] + "…"
				break
			}
		}
		return strconv.Quote(v)
	}
	return "an unsupported node"
}

// field is one key and value of a mapping, aliases resolved.
type field struct {
	name string
	key  *yaml.Node
	val  *yaml.Node
}

func lookup(fields []field, name string) (field, bool) {
	for _, f := range fields {
		if f.name == name {
			return f, true
		}
	}
	return field{}, false
}

// abbreviate shortens a field path for a message about deep nesting.
func abbreviate(path string) string {
	if len(path) <= 120 {
		return path
	}
	return path[:40] + "…" + path[len(path)-60:]
}

func joinField(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// fields returns a mapping's fields in file order, with merge keys (<<)
// expanded as yaml.v2 does (explicit fields win). Keys must be strings,
// except in metadata (anyKey), where other scalars are taken as their text
// as the reference does. A field given twice is a problem.
func (p *parser) fields(n *yaml.Node, path string, anyKey bool) []field {
	var explicit, merged []field
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], p.resolve(n.Content[i+1])
		if !p.visit(k) || v == nil {
			return nil
		}
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merged = append(merged, p.mergeFields(v, path, anyKey)...)
			continue
		}
		rk := p.resolve(k)
		if rk == nil {
			return nil
		}
		if rk.Kind != yaml.ScalarNode || (!anyKey && rk.Tag != "!!str") {
			p.add(k.Line, path, "field names must be strings, found %s (%s); quote it if it is meant as a name",
				describe(rk), strings.TrimPrefix(rk.ShortTag(), "!!"))
			continue
		}
		if first, dup := seen[rk.Value]; dup {
			p.add(k.Line, joinField(path, rk.Value), "given twice in one mapping (first at line %d)", first)
			continue
		}
		seen[rk.Value] = k.Line
		explicit = append(explicit, field{name: rk.Value, key: k, val: v})
	}
	for _, f := range merged {
		if _, dup := seen[f.name]; !dup {
			seen[f.name] = f.key.Line
			explicit = append(explicit, f)
		}
	}
	return explicit
}

// mergeFields returns the fields a merge key (<<) brings in: those of a
// mapping, or of each mapping in a list.
func (p *parser) mergeFields(v *yaml.Node, path string, anyKey bool) []field {
	switch v.Kind {
	case yaml.MappingNode:
		return p.fields(v, path, anyKey)
	case yaml.SequenceNode:
		var out []field
		seen := map[string]bool{}
		for _, item := range v.Content {
			item = p.resolve(item)
			if item == nil {
				return out
			}
			if item.Kind != yaml.MappingNode {
				p.add(item.Line, path, "a merge key (<<) takes mappings, found %s", describe(item))
				continue
			}
			// Earlier mappings in the list win, as in yaml.v2.
			for _, f := range p.fields(item, path, anyKey) {
				if !seen[f.name] {
					seen[f.name] = true
					out = append(out, f)
				}
			}
		}
		return out
	}
	p.add(v.Line, path, "a merge key (<<) takes a mapping or a list of mappings, found %s", describe(v))
	return nil
}

// str reads a scalar as text. Numbers and booleans are taken as written (the
// reference's yaml.v2 does the same for string fields); null is "".
func (p *parser) str(f field, path string) (string, bool) {
	if f.val.Kind != yaml.ScalarNode {
		p.add(f.val.Line, path, "must be a string, found %s", describe(f.val))
		return "", false
	}
	if isNull(f.val) {
		return "", true
	}
	return f.val.Value, true
}

// boolean reads true or false (also the YAML 1.1 forms yes/no/on/off that the
// reference's yaml.v2 accepts); null is false.
func (p *parser) boolean(f field, path string) (bool, bool) {
	var b bool
	if f.val.Kind != yaml.ScalarNode || f.val.Decode(&b) != nil {
		p.add(f.val.Line, path, "must be true or false, found %s", describe(f.val))
		return false, false
	}
	return b, true
}

// whole reads a whole number from 0 to max. A float with no fraction (10.0)
// is taken, as the reference's yaml.v2 takes it.
func (p *parser) whole(f field, path string, max uint64, negHint string) (uint64, bool) {
	n := f.val
	bad := func() (uint64, bool) {
		p.add(n.Line, path, "must be a whole number from 0 to %d, found %s", max, describe(n))
		return 0, false
	}
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
		return bad()
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return bad()
	}
	var u uint64
	switch x := v.(type) {
	case int:
		if x < 0 {
			p.add(n.Line, path, "must not be negative, found %d%s", x, negHint)
			return 0, false
		}
		u = uint64(x)
	case int64:
		if x < 0 {
			p.add(n.Line, path, "must not be negative, found %d%s", x, negHint)
			return 0, false
		}
		u = uint64(x)
	case uint64:
		u = x
	case float64:
		if x < 0 {
			p.add(n.Line, path, "must not be negative, found %s%s", n.Value, negHint)
			return 0, false
		}
		if x != math.Trunc(x) || x > float64(max) {
			return bad()
		}
		u = uint64(x)
	default:
		return bad()
	}
	if u > max {
		return bad()
	}
	return u, true
}
