package authconfig

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/floodgate/floodgate/pkg/descriptors"
)

// This file reads YAML nodes as pkg/descriptors does (its helpers are
// unexported and tied to its parser, so the few this loader needs are
// copied here): documents, syntax errors, aliases under a node budget,
// mappings with duplicate and unknown fields reported, scalars. Problems
// are descriptors.Problem, so `sidecar validate` and the reload log print
// both configs' problems alike.

// Limits of what a file may hold, as for the limits config: far beyond any
// real auth config, they only keep a broken or hostile file from
// exhausting memory.
const (
	// maxFileSize is the largest auth, keys or JWKS file read.
	maxFileSize = 8 << 20
	// baseNodeBudget is the number of YAML nodes a file may expand to beyond
	// four per byte; aliases can otherwise expand a small file enormously.
	baseNodeBudget = 100_000
	// maxProblems bounds the report.
	maxProblems = 1000
)

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// problemList collects problems in the order they are found.
type problemList struct {
	list      descriptors.Problems
	truncated bool
}

func (l *problemList) add(p descriptors.Problem) {
	if len(l.list) >= maxProblems {
		l.truncated = true
		return
	}
	l.list = append(l.list, p)
}

// result returns the problems sorted by file order and line, or nil.
func (l *problemList) result(fileOrder map[string]int) error {
	if len(l.list) == 0 {
		return nil
	}
	out := slices.Clone(l.list)
	slices.SortStableFunc(out, func(a, b descriptors.Problem) int {
		if c := cmp.Compare(fileOrder[a.File], fileOrder[b.File]); c != 0 {
			return c
		}
		return cmp.Compare(a.Line, b.Line)
	})
	if l.truncated {
		last := out[len(out)-1]
		out = append(out, descriptors.Problem{File: last.File, Line: last.Line,
			Msg: fmt.Sprintf("too many problems; stopped after %d", maxProblems)})
	}
	return out
}

// decodeYAML returns the file's first YAML document, or nil for an empty
// file. A second non-empty document is an error (it would be ignored).
func decodeYAML(data []byte) (doc *yaml.Node, err error) {
	// yaml.v3 reports syntax errors by panicking internally and recovering;
	// this only guards against a bug in it crashing the service.
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
			return nil, fmt.Errorf("yaml: line %d: a second YAML document; a file holds one document", next.Content[0].Line)
		}
	}
}

// parser reads one file's YAML nodes, recording every problem it finds.
type parser struct {
	file     string
	problems *problemList
	// budget is the number of YAML nodes the parser may still visit;
	// aliases are followed, so this bounds their expansion (and cycles).
	budget    int
	exhausted bool
}

func newParser(file string, data []byte, problems *problemList) *parser {
	return &parser{file: file, problems: problems, budget: baseNodeBudget + 4*len(data)}
}

// root decodes data and returns its top node, nil when the file is empty
// or null (or broken: the problem is recorded).
func (p *parser) root(data []byte) *yaml.Node {
	if len(data) > maxFileSize {
		p.add(0, "", "file is larger than %d bytes", maxFileSize)
		return nil
	}
	doc, err := decodeYAML(data)
	if err != nil {
		p.syntaxError(data, err)
		return nil
	}
	if doc == nil || len(doc.Content) == 0 {
		return nil
	}
	n := p.resolve(doc.Content[0])
	if n == nil || isNull(n) {
		return nil
	}
	return n
}

// syntaxError records a YAML syntax error on the line yaml.v3 names,
// clamped to the file (it names one past a final newline for errors at
// the end of the stream).
func (p *parser) syntaxError(data []byte, err error) {
	msg := err.Error()
	line := 1
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	lines := bytes.Count(data, []byte("\n"))
	if len(data) > 0 && data[len(data)-1] != '\n' {
		lines++
	}
	if r := refineLine(data, line, msg); r <= lines {
		line = r
	}
	line = max(1, min(line, lines))
	p.problems.add(descriptors.Problem{File: p.file, Line: line, Msg: "invalid YAML: " + msg, Err: err})
}

// maxRefineLines bounds how far past yaml.v3's line refineLine looks; each
// step parses the file's beginning again.
const maxRefineLines = 200

// refineLine returns the first line at or after from such that the file
// cut after it fails with the same message, which is where the error
// shows (yaml.v3 often names the line where the enclosing block starts);
// failing that, a line past the end (no refinement).
func refineLine(data []byte, from int, msg string) int {
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
			if m := strings.TrimPrefix(yamlLine.ReplaceAllString(err.Error(), ""), "yaml: "); m == msg {
				return l
			}
		}
	}
	return math.MaxInt
}

// add records a problem; once the node budget is spent the parser only
// unwinds, and what it would report then is noise.
func (p *parser) add(line int, field, format string, args ...any) {
	if p.exhausted {
		return
	}
	p.problems.add(descriptors.Problem{File: p.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// visit spends one node of the budget; false (once, with a problem) when
// it is spent.
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
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// describe names a node's kind and value for messages. Never use it on a
// node that may hold a secret.
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

func joinField(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// mapping returns n's fields when n is a mapping, reporting unknown ones
// (allowed lists the accepted names, where names the mapping's kind); ok is
// false, with a problem, when n is not a mapping. A null node is an empty
// mapping.
func (p *parser) mapping(n *yaml.Node, path, where string, allowed []string) (fields []field, ok bool) {
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.MappingNode {
		p.add(n.Line, path, "must be a mapping (%s), found %s", strings.Join(allowed, ", "), describe(n))
		return nil, false
	}
	fields = p.fields(n, path)
	for _, f := range fields {
		if slices.Contains(allowed, f.name) {
			continue
		}
		msg := fmt.Sprintf("unknown field %q in %s", f.name, where)
		if s := suggest(f.name, allowed); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		p.add(f.key.Line, joinField(path, f.name), "%s; allowed: %s", msg, strings.Join(allowed, ", "))
	}
	return fields, true
}

// fields returns a mapping's fields in file order, with merge keys (<<)
// expanded (explicit fields win). A field given twice is a problem.
func (p *parser) fields(n *yaml.Node, path string) []field {
	var explicit, merged []field
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], p.resolve(n.Content[i+1])
		if !p.visit(k) || v == nil {
			return nil
		}
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merged = append(merged, p.mergeFields(v, path)...)
			continue
		}
		rk := p.resolve(k)
		if rk == nil {
			return nil
		}
		if rk.Kind != yaml.ScalarNode || rk.Tag != "!!str" {
			p.add(k.Line, path, "field names must be strings, found %s", describe(rk))
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

// mergeFields returns the fields a merge key (<<) brings in.
func (p *parser) mergeFields(v *yaml.Node, path string) []field {
	switch v.Kind {
	case yaml.MappingNode:
		return p.fields(v, path)
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
			for _, f := range p.fields(item, path) {
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

// list returns a sequence's items, aliases resolved; ok is false, with a
// problem, when n is not a list. Null is an empty list.
func (p *parser) list(n *yaml.Node, path, what string) (items []*yaml.Node, ok bool) {
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		p.add(n.Line, path, "must be a list of %s, found %s", what, describe(n))
		return nil, false
	}
	for _, item := range n.Content {
		item = p.resolve(item)
		if item == nil || !p.visit(item) {
			return items, false
		}
		items = append(items, item)
	}
	return items, true
}

// str reads a scalar as text (numbers and booleans as written); null is "".
func (p *parser) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		p.add(n.Line, path, "must be a string, found %s", describe(n))
		return "", false
	}
	if isNull(n) {
		return "", true
	}
	return n.Value, true
}

// nonEmpty reads a string that must not be empty.
func (p *parser) nonEmpty(n *yaml.Node, path string) (string, bool) {
	s, ok := p.str(n, path)
	if ok && s == "" {
		p.add(n.Line, path, "must not be empty")
		return "", false
	}
	return s, ok
}

// strings reads a list of non-empty strings.
func (p *parser) strList(n *yaml.Node, path string) ([]string, bool) {
	items, ok := p.list(n, path, "strings")
	var out []string
	for i, item := range items {
		s, good := p.nonEmpty(item, fmt.Sprintf("%s[%d]", path, i))
		ok = ok && good
		if good {
			out = append(out, s)
		}
	}
	return out, ok
}

// boolean reads true or false; null is false.
func (p *parser) boolean(n *yaml.Node, path string) (bool, bool) {
	var b bool
	if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
		p.add(n.Line, path, "must be true or false, found %s", describe(n))
		return false, false
	}
	return b, true
}

// whole reads a whole number from 0 to max.
func (p *parser) whole(n *yaml.Node, path string, max uint64) (uint64, bool) {
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
	var f float64
	switch x := v.(type) {
	case int:
		f = float64(x)
	case int64:
		f = float64(x)
	case uint64:
		if x > max {
			return bad()
		}
		return x, true
	case float64:
		f = x
	default:
		return bad()
	}
	if f < 0 {
		p.add(n.Line, path, "must not be negative, found %s", n.Value)
		return 0, false
	}
	if f != math.Trunc(f) || f > float64(max) {
		return bad()
	}
	return uint64(f), true
}

// suggest returns the allowed name that name is likely a misspelling of.
func suggest(name string, allowed []string) string {
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(s))
	}
	n := norm(name)
	for _, a := range allowed {
		if norm(a) == n {
			return a
		}
	}
	if len(n) < 3 {
		return ""
	}
	typos := 1
	if len(n) >= 6 {
		typos = 2
	}
	for _, a := range allowed {
		if editDistance(norm(a), n) <= typos {
			return a
		}
	}
	return ""
}

// editDistance is the optimal string alignment distance of a and b.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
