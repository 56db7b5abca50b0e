package yamlconf

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// BaseNodeBudget is the number of YAML nodes a file may expand to beyond
// four per byte; aliases can otherwise expand a small file enormously.
const BaseNodeBudget = 100_000

// Style holds the few wordings in which the loaders' messages have always
// differed, so that sharing this code changes none of them.
type Style struct {
	// SecondDocument ends the message for a file with a second non-empty
	// YAML document, after "a second YAML document; ".
	SecondDocument string
	// KeyTag adds the key's tag and a hint to quote it to the message for
	// a field name that is not a string.
	KeyTag bool
	// NegativeAsWritten shows a negative whole number as written (-0x10)
	// rather than as its value (-16) in "must not be negative, found ...".
	NegativeAsWritten bool
}

// Parser reads one file's YAML nodes, recording every problem it finds in
// a ProblemList. Each loader embeds it in its own parser, which gives the
// nodes their meaning.
type Parser struct {
	// File is the file's name, as problems give it.
	File     string
	problems *ProblemList
	style    Style
	// budget is the number of YAML nodes the parser may still visit;
	// aliases are followed, so this bounds their expansion (and cycles).
	budget    int
	exhausted bool
}

// NewParser returns a parser of data, the contents of file, that records
// its problems in problems. Its node budget is BaseNodeBudget and four
// nodes per byte of data.
func NewParser(file string, data []byte, problems *ProblemList, style Style) *Parser {
	return &Parser{File: file, problems: problems, style: style, budget: BaseNodeBudget + 4*len(data)}
}

// Root decodes data and returns its top node, aliases resolved; nil when
// the file is empty or null. ok is false, with a problem, when the file
// cannot be decoded (it is larger than MaxFileSize, or not YAML).
func (p *Parser) Root(data []byte) (root *yaml.Node, ok bool) {
	if len(data) > MaxFileSize {
		p.Add(0, "", "file is larger than %d bytes", MaxFileSize)
		return nil, false
	}
	doc, err := Decode(data, p.style.SecondDocument)
	if err != nil {
		p.syntaxError(data, err)
		return nil, false
	}
	if doc != nil && len(doc.Content) > 0 {
		root = p.Resolve(doc.Content[0])
	}
	if root == nil || IsNull(root) {
		return nil, true
	}
	return root, true
}

// Add records a problem. Once the node budget is spent the parser only
// unwinds, and what it would report then (fields missing because they were
// not read) is noise.
func (p *Parser) Add(line int, field, format string, args ...any) {
	if p.exhausted {
		return
	}
	p.problems.Add(Problem{File: p.File, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// Visit spends one node of the budget; it reports false (once, with a
// problem) when the budget is spent.
func (p *Parser) Visit(n *yaml.Node) bool {
	if p.exhausted {
		return false
	}
	p.budget--
	if p.budget < 0 {
		p.Add(n.Line, "", "the document expands to too many nodes (aliases referring to aliases, or to themselves)")
		p.exhausted = true
		return false
	}
	return true
}

// Resolve follows aliases to the node they name (and a document to its
// content); nil when the budget is spent.
func (p *Parser) Resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		if !p.Visit(n) {
			return nil
		}
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return p.Resolve(n.Content[0])
	}
	return n
}

// IsNull reports whether n is a null scalar.
func IsNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// Describe names a node's kind and value for messages (a scalar's value
// cut at 40 bytes). Never use it on a node that may hold a secret.
func Describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if IsNull(n) {
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

// Field is one key and value of a mapping, aliases resolved.
type Field struct {
	Name string
	Key  *yaml.Node
	Val  *yaml.Node
}

// Lookup returns the field called name.
func Lookup(fields []Field, name string) (Field, bool) {
	for _, f := range fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// JoinField appends a field name to a field path.
func JoinField(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// Abbreviate shortens a field path for a message about deep nesting.
func Abbreviate(path string) string {
	if len(path) <= 120 {
		return path
	}
	return path[:40] + "…" + path[len(path)-60:]
}

// Fields returns a mapping's fields in file order, with merge keys (<<)
// expanded as yaml.v2 does (explicit fields win). Keys must be strings,
// unless anyKey, where other scalars are taken as their text. A field
// given twice is a problem.
func (p *Parser) Fields(n *yaml.Node, path string, anyKey bool) []Field {
	var explicit, merged []Field
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], p.Resolve(n.Content[i+1])
		if !p.Visit(k) || v == nil {
			return nil
		}
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merged = append(merged, p.mergeFields(v, path, anyKey)...)
			continue
		}
		rk := p.Resolve(k)
		if rk == nil {
			return nil
		}
		if rk.Kind != yaml.ScalarNode || (!anyKey && rk.Tag != "!!str") {
			if p.style.KeyTag {
				p.Add(k.Line, path, "field names must be strings, found %s (%s); quote it if it is meant as a name",
					Describe(rk), strings.TrimPrefix(rk.ShortTag(), "!!"))
			} else {
				p.Add(k.Line, path, "field names must be strings, found %s", Describe(rk))
			}
			continue
		}
		if first, dup := seen[rk.Value]; dup {
			p.Add(k.Line, JoinField(path, rk.Value), "given twice in one mapping (first at line %d)", first)
			continue
		}
		seen[rk.Value] = k.Line
		explicit = append(explicit, Field{Name: rk.Value, Key: k, Val: v})
	}
	for _, f := range merged {
		if _, dup := seen[f.Name]; !dup {
			seen[f.Name] = f.Key.Line
			explicit = append(explicit, f)
		}
	}
	return explicit
}

// mergeFields returns the fields a merge key (<<) brings in: those of a
// mapping, or of each mapping in a list.
func (p *Parser) mergeFields(v *yaml.Node, path string, anyKey bool) []Field {
	switch v.Kind {
	case yaml.MappingNode:
		return p.Fields(v, path, anyKey)
	case yaml.SequenceNode:
		var out []Field
		seen := map[string]bool{}
		for _, item := range v.Content {
			item = p.Resolve(item)
			if item == nil {
				return out
			}
			if item.Kind != yaml.MappingNode {
				p.Add(item.Line, path, "a merge key (<<) takes mappings, found %s", Describe(item))
				continue
			}
			// Earlier mappings in the list win, as in yaml.v2.
			for _, f := range p.Fields(item, path, anyKey) {
				if !seen[f.Name] {
					seen[f.Name] = true
					out = append(out, f)
				}
			}
		}
		return out
	}
	p.Add(v.Line, path, "a merge key (<<) takes a mapping or a list of mappings, found %s", Describe(v))
	return nil
}

// CheckFields reports the fields that a mapping of this kind (where, such
// as "a descriptor") does not accept, with a hint when the name is a
// misspelling of an allowed one or, failing that, when home says where it
// belongs (home may be nil). It returns the allowed fields it suggested, so
// that the caller does not also report them as missing.
func (p *Parser) CheckFields(fields []Field, path, where string, allowed []string, home map[string]string) (suggested map[string]bool) {
	for _, f := range fields {
		if slices.Contains(allowed, f.Name) {
			continue
		}
		msg := fmt.Sprintf("unknown field %q in %s", f.Name, where)
		if s := Suggest(f.Name, allowed); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
			if suggested == nil {
				suggested = map[string]bool{}
			}
			suggested[s] = true
		} else if h, ok := home[f.Name]; ok {
			msg += fmt.Sprintf(" (%q belongs in %s)", f.Name, h)
		}
		msg += "; allowed: " + strings.Join(allowed, ", ")
		p.Add(f.Key.Line, JoinField(path, f.Name), "%s", msg)
	}
	return suggested
}

// Mapping returns n's fields when n is a mapping, reporting unknown ones
// (allowed lists the accepted names, where names the mapping's kind); ok is
// false, with a problem, when n is not a mapping. A null node is an empty
// mapping.
func (p *Parser) Mapping(n *yaml.Node, path, where string, allowed []string) (fields []Field, ok bool) {
	if IsNull(n) {
		return nil, true
	}
	if n.Kind != yaml.MappingNode {
		p.Add(n.Line, path, "must be a mapping (%s), found %s", strings.Join(allowed, ", "), Describe(n))
		return nil, false
	}
	fields = p.Fields(n, path, false)
	p.CheckFields(fields, path, where, allowed, nil)
	return fields, true
}

// List returns a sequence's items, aliases resolved; ok is false, with a
// problem, when n is not a list (of what). Null is an empty list.
func (p *Parser) List(n *yaml.Node, path, what string) (items []*yaml.Node, ok bool) {
	if IsNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		p.Add(n.Line, path, "must be a list of %s, found %s", what, Describe(n))
		return nil, false
	}
	for _, item := range n.Content {
		item = p.Resolve(item)
		if item == nil || !p.Visit(item) {
			return items, false
		}
		items = append(items, item)
	}
	return items, true
}

// Items reads a list of non-empty strings (of what), calling each with
// every item's node, its path ("path[i]") and its text; each reports
// whether the item is good (it adds its own problem when not). A list
// that is present but empty is the problem empty, unless empty is "". ok
// is false when the list or any item was bad.
func (p *Parser) Items(n *yaml.Node, path, what, empty string, each func(item *yaml.Node, ipath, s string) bool) bool {
	items, ok := p.List(n, path, what)
	listed := ok
	for i, item := range items {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		s, good := p.NonEmpty(item, ipath)
		if !good || !each(item, ipath, s) {
			ok = false
		}
	}
	if listed && len(items) == 0 && empty != "" {
		p.Add(n.Line, path, "%s", empty)
		ok = false
	}
	return ok
}

// Str reads a scalar as text. Numbers and booleans are taken as written (as
// yaml.v2 does for string fields); null is "".
func (p *Parser) Str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		p.Add(n.Line, path, "must be a string, found %s", Describe(n))
		return "", false
	}
	if IsNull(n) {
		return "", true
	}
	return n.Value, true
}

// NonEmpty reads a string that must not be empty.
func (p *Parser) NonEmpty(n *yaml.Node, path string) (string, bool) {
	s, ok := p.Str(n, path)
	if ok && s == "" {
		p.Add(n.Line, path, "must not be empty")
		return "", false
	}
	return s, ok
}

// StrList reads a list of non-empty strings.
func (p *Parser) StrList(n *yaml.Node, path string) ([]string, bool) {
	items, ok := p.List(n, path, "strings")
	var out []string
	for i, item := range items {
		s, good := p.NonEmpty(item, fmt.Sprintf("%s[%d]", path, i))
		ok = ok && good
		if good {
			out = append(out, s)
		}
	}
	return out, ok
}

// Bool reads true or false (also the YAML 1.1 forms yes/no/on/off that
// yaml.v2 accepts); null is false.
func (p *Parser) Bool(n *yaml.Node, path string) (bool, bool) {
	var b bool
	if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
		p.Add(n.Line, path, "must be true or false, found %s", Describe(n))
		return false, false
	}
	return b, true
}

// Whole reads a whole number from 0 to max. A float with no fraction (10.0)
// is taken, as yaml.v2 takes it. negHint ends the message for a negative
// number.
func (p *Parser) Whole(n *yaml.Node, path string, max uint64, negHint string) (uint64, bool) {
	bad := func() (uint64, bool) {
		p.Add(n.Line, path, "must be a whole number from 0 to %d, found %s", max, Describe(n))
		return 0, false
	}
	negative := func(value int64) (uint64, bool) {
		shown := strconv.FormatInt(value, 10)
		if p.style.NegativeAsWritten {
			shown = n.Value
		}
		p.Add(n.Line, path, "must not be negative, found %s%s", shown, negHint)
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
			return negative(int64(x))
		}
		u = uint64(x)
	case int64:
		if x < 0 {
			return negative(x)
		}
		u = uint64(x)
	case uint64:
		u = x
	case float64:
		if x < 0 {
			p.Add(n.Line, path, "must not be negative, found %s%s", n.Value, negHint)
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

// Duration reads a Go duration (30s, 5m) from lo to hi.
func (p *Parser) Duration(n *yaml.Node, path string, lo, hi time.Duration) (time.Duration, bool) {
	s, ok := p.Str(n, path)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil || s == "" {
		p.Add(n.Line, path, "invalid duration %q; write a number and a unit, such as 30s, 5m or 1h", s)
		return 0, false
	}
	if d < lo || d > hi {
		p.Add(n.Line, path, "must be from %v to %v, found %v", lo, hi, d)
		return 0, false
	}
	return d, true
}

// Suggest returns the allowed name that name is likely a misspelling of:
// the same but for letter case, '_' and '-', or a typo or two away (one
// for short names); "" when there is none.
func Suggest(name string, allowed []string) string {
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

// editDistance counts the insertions, deletions, substitutions and swaps of
// adjacent bytes that turn a into b (optimal string alignment distance).
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
