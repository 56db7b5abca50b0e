package descriptors

import (
	"strconv"
	"strings"
)

// Entry is one entry of a request descriptor, as a door hands it over
// (Envoy's RateLimitDescriptor.Entry, or an identity's attributes).
type Entry struct {
	Key, Value string
}

// node is one level of a compiled descriptor tree: a configured descriptor
// (or a domain's root).
type node struct {
	rule *Rule
	// children groups the child descriptors by key, so a request entry
	// costs one map lookup for its key and one for its value.
	children map[string]*keyGroup
	// Where the descriptor was defined, for duplicate reports.
	file string
	line int
}

// keyGroup holds the children of a node that share a key.
type keyGroup struct {
	exact    map[string]*node // configured value -> child
	patterns []pattern        // values with '*', in file order
	keyOnly  *node            // the child without a value
}

// pattern is a child whose value holds '*'.
type pattern struct {
	value string
	glob  glob
	node  *node
}

// find returns the child with this key and configured value, or nil.
func (n *node) find(key, value string) *node {
	g := n.children[key]
	switch {
	case g == nil:
		return nil
	case value == "":
		return g.keyOnly
	case strings.Contains(value, "*"):
		for i := range g.patterns {
			if g.patterns[i].value == value {
				return g.patterns[i].node
			}
		}
		return nil
	}
	return g.exact[value]
}

// add creates the child with this key and configured value; find must have
// returned nil for it.
func (n *node) add(key, value string) *node {
	if n.children == nil {
		n.children = map[string]*keyGroup{}
	}
	g := n.children[key]
	if g == nil {
		g = &keyGroup{}
		n.children[key] = g
	}
	c := &node{}
	switch {
	case value == "":
		g.keyOnly = c
	case strings.Contains(value, "*"):
		g.patterns = append(g.patterns, pattern{value: value, glob: compileGlob(value), node: c})
	default:
		if g.exact == nil {
			g.exact = map[string]*node{}
		}
		g.exact[value] = c
	}
	return c
}

// match returns the child a request entry selects: the exact key and value,
// else the first pattern (in file order) that matches the value, else the
// key alone.
func (n *node) match(key, value string) *node {
	g := n.children[key]
	if g == nil {
		return nil
	}
	if c, ok := g.exact[value]; ok {
		return c
	}
	for i := range g.patterns {
		if g.patterns[i].glob.match(value) {
			return g.patterns[i].node
		}
	}
	return g.keyOnly
}

// Match returns the rule that applies to a request descriptor's entries, or
// nil when none does. At each level the entry selects a child (exact key and
// value, else the first matching pattern, else the key alone); the rule is
// the one of the child selected by the last entry, so a rule deeper or
// shallower than the entries does not apply, and a descriptor without a
// rate_limit there means no rule. An unlimited rule is returned (check
// Rule.Unlimited). Match does not allocate.
func (d *Domain) Match(entries []Entry) *Rule {
	if d == nil || len(entries) == 0 {
		return nil
	}
	n := &d.root
	for _, e := range entries {
		if n = n.match(e.Key, e.Value); n == nil {
			return nil
		}
	}
	return n.rule
}

// glob is a value pattern in which each '*' matches any run of bytes
// (including none), pre-split at load time so matching does not allocate.
type glob struct {
	prefix, suffix string
	middle         []string // literal parts between the first and last '*'
	minLen         int      // bytes the literal parts need
}

func compileGlob(p string) glob {
	parts := strings.Split(p, "*")
	g := glob{prefix: parts[0], suffix: parts[len(parts)-1]}
	for _, m := range parts[1 : len(parts)-1] {
		if m != "" {
			g.middle = append(g.middle, m)
		}
	}
	g.minLen = len(g.prefix) + len(g.suffix)
	for _, m := range g.middle {
		g.minLen += len(m)
	}
	return g
}

// match reports whether s matches the pattern. Taking each middle part at
// its leftmost place is enough: with only '*' wildcards, an earlier place
// never prevents a later part from matching.
func (g *glob) match(s string) bool {
	if len(s) < g.minLen || !strings.HasPrefix(s, g.prefix) || !strings.HasSuffix(s, g.suffix) {
		return false
	}
	rest := s[len(g.prefix) : len(s)-len(g.suffix)]
	for _, m := range g.middle {
		i := strings.Index(rest, m)
		if i < 0 {
			return false
		}
		rest = rest[i+len(m):]
	}
	return true
}

// nameStats sets the StatName of each of a domain's rules, in file order;
// Rule.StatName documents the scheme.
func nameStats(rules []*Rule) {
	used := make(map[string]bool, len(rules))
	for _, r := range rules {
		var b strings.Builder
		for i, e := range r.Path {
			if i > 0 {
				b.WriteByte('.')
			}
			escapeStat(&b, e.Key)
			if e.Value != "" {
				b.WriteByte('_')
				escapeStat(&b, e.Value)
			}
		}
		name := b.String()
		for n := 2; used[name]; n++ {
			name = b.String() + "~" + strconv.Itoa(n)
		}
		used[name] = true
		r.StatName = name
	}
}

func escapeStat(b *strings.Builder, s string) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c > 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '%' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
}
