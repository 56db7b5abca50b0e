package descriptors

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/floodgate/floodgate/pkg/quota"
)

// The fields each kind of mapping accepts, in the order the error messages
// list them. envoyproxy/ratelimit checks field names against one flat list
// whatever the mapping; a field in the wrong mapping is ignored there, which
// hides mistakes such as `unit` written beside `key`, so here each mapping
// has its own list.
var (
	rootFields       = []string{"domain", "algorithm", "descriptors"}
	descriptorFields = []string{"key", "value", "rate_limit", "descriptors", "shadow_mode", "quota_mode",
		"detailed_metric", "value_to_metric", "share_threshold", "metadata"}
	rateLimitFields = []string{"unit", "requests_per_unit", "unlimited", "name", "replaces", "algorithm", "burst"}
	replacesFields  = []string{"name"}
)

// fieldHome says where a field that is misplaced belongs, for the hint in
// the unknown-field message.
var fieldHome = map[string]string{
	"domain":            "the top level of the file",
	"algorithm":         "the top level of the file or rate_limit",
	"unit":              "rate_limit",
	"requests_per_unit": "rate_limit",
	"unlimited":         "rate_limit",
	"name":              "rate_limit",
	"replaces":          "rate_limit",
	"burst":             "rate_limit",
	"key":               "a descriptor",
	"value":             "a descriptor",
	"rate_limit":        "a descriptor",
	"shadow_mode":       "a descriptor",
	"quota_mode":        "a descriptor",
	"detailed_metric":   "a descriptor",
	"value_to_metric":   "a descriptor",
	"share_threshold":   "a descriptor",
	"metadata":          "a descriptor",
}

const allowedUnits = quota.AllowedUnits

const allowedAlgorithms = "sliding_window, fixed_window, token_bucket"

// Limits of what a file may hold. They are far beyond any real config and
// only keep a broken or hostile file from exhausting memory or the stack.
const (
	// maxFileSize is the largest config file read.
	maxFileSize = 8 << 20
	// maxNesting is the deepest nesting of descriptors (and of metadata).
	maxNesting = 128
	// baseNodeBudget is the number of YAML nodes a file may expand to beyond
	// four per byte; aliases can otherwise expand a small file enormously.
	baseNodeBudget = 100_000
	// maxRequests bounds requests_per_unit and burst: Envoy's
	// RateLimitResponse.RateLimit.requests_per_unit is a uint32.
	maxRequests = math.MaxUint32
)

// fileSpec is one parsed file, before its descriptors join a domain tree.
type fileSpec struct {
	name        string
	domain      string
	domainLine  int
	descriptors []*descSpec
}

// descSpec is one parsed descriptor.
type descSpec struct {
	file  string
	line  int    // line of the descriptor's mapping
	field string // its path in the file, e.g. "descriptors[0].descriptors[2]"
	key   string
	value string
	// rule is nil when the descriptor has no rate_limit. The parser fills
	// the fields it knows; compile adds the ones that depend on the path.
	rule           *Rule
	shareThreshold bool
	children       []*descSpec
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

// parseFile parses one file. It returns nil when the file holds no usable
// mapping (the problems say why).
func parseFile(name string, data []byte, problems *problemList) *fileSpec {
	p := &parser{file: name, problems: problems, budget: baseNodeBudget + 4*len(data)}
	if len(data) > maxFileSize {
		p.add(0, "", "file is larger than %d bytes", maxFileSize)
		return nil
	}
	doc, err := decodeYAML(data)
	if err != nil {
		p.syntaxError(data, err)
		return nil
	}
	fs := &fileSpec{name: name}
	var root *yaml.Node
	if doc != nil && len(doc.Content) > 0 {
		root = p.resolve(doc.Content[0])
	}
	if root == nil || isNull(root) {
		p.add(1, "domain", "missing; every file needs a non-empty domain")
		return fs
	}
	if root.Kind != yaml.MappingNode {
		p.add(root.Line, "", "the file must be a mapping with domain and descriptors, found %s", describe(root))
		return fs
	}
	fields := p.fields(root, "", false)
	misspelled := p.checkFields(fields, "", "the top level of the file", rootFields)
	algorithm := quota.SlidingWindow
	algorithmFrom := "the default"
	if f, ok := lookup(fields, "algorithm"); ok {
		if a, ok := p.algorithm(f, "algorithm"); ok {
			algorithm, algorithmFrom = a, "the file's algorithm"
		}
	}
	domainSeen := false
	for _, f := range fields {
		switch f.name {
		case "domain":
			domainSeen = true
			fs.domainLine = f.val.Line
			if s, ok := p.str(f, "domain"); ok {
				if s == "" {
					p.add(f.val.Line, "domain", "must not be empty")
				}
				fs.domain = s
			}
		case "descriptors":
			ctx := ruleContext{algorithm: algorithm, algorithmFrom: algorithmFrom}
			fs.descriptors = p.descriptorList(f.val, "descriptors", 1, ctx)
		}
	}
	if !domainSeen && !misspelled["domain"] {
		p.add(root.Line, "domain", "missing; every file needs a non-empty domain")
	}
	return fs
}

// checkFields reports the fields that a mapping of this kind (where) does
// not accept, with a hint when the name is a misspelling or belongs
// elsewhere. It returns the allowed fields it suggested, so that the caller
// does not also report them as missing.
func (p *parser) checkFields(fields []field, path, where string, allowed []string) (suggested map[string]bool) {
	for _, f := range fields {
		if slices.Contains(allowed, f.name) {
			continue
		}
		msg := fmt.Sprintf("unknown field %q in %s", f.name, where)
		if s := suggest(f.name, allowed); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
			if suggested == nil {
				suggested = map[string]bool{}
			}
			suggested[s] = true
		} else if home, ok := fieldHome[f.name]; ok {
			msg += fmt.Sprintf(" (%q belongs in %s)", f.name, home)
		}
		msg += "; allowed: " + strings.Join(allowed, ", ")
		p.add(f.key.Line, joinField(path, f.name), "%s", msg)
	}
	return suggested
}

// suggest returns the allowed field that name is likely a misspelling of:
// the same but for letter case, '_' and '-', or a typo or two away (one
// for short names).
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
	typos := 1
	if len(n) >= 6 {
		typos = 2
	}
	if len(n) < 3 {
		return ""
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

// algorithm reads an algorithm name (any letter case).
func (p *parser) algorithm(f field, path string) (quota.Algorithm, bool) {
	s, ok := p.str(f, path)
	if !ok {
		return 0, false
	}
	a, ok := quota.ParseAlgorithm(strings.ToLower(s))
	if !ok {
		p.add(f.val.Line, path, "unknown algorithm %q; allowed: %s", s, allowedAlgorithms)
		return 0, false
	}
	return a, true
}

// ruleContext is what a rate_limit inherits from its file.
type ruleContext struct {
	algorithm     quota.Algorithm
	algorithmFrom string // for messages: "the default" or "the file's algorithm"
}

// descriptorList parses a `descriptors` list.
func (p *parser) descriptorList(n *yaml.Node, path string, depth int, ctx ruleContext) []*descSpec {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.add(n.Line, path, "must be a list of descriptors, found %s", describe(n))
		return nil
	}
	if depth > maxNesting {
		p.add(n.Line, abbreviate(path), "descriptors are nested more than %d levels deep", maxNesting)
		return nil
	}
	var out []*descSpec
	for i, item := range n.Content {
		itemPath := fmt.Sprintf("%s[%d]", path, i)
		item = p.resolve(item)
		if item == nil || !p.visit(item) {
			return out
		}
		if item.Kind != yaml.MappingNode {
			p.add(item.Line, itemPath, "each descriptor must be a mapping (key, value, rate_limit, ...), found %s", describe(item))
			continue
		}
		if d := p.descriptor(item, itemPath, depth, ctx); d != nil {
			out = append(out, d)
		}
	}
	return out
}

// descriptor parses one descriptor mapping. It returns nil when the
// descriptor cannot take part in the tree (no usable key).
func (p *parser) descriptor(n *yaml.Node, path string, depth int, ctx ruleContext) *descSpec {
	fields := p.fields(n, path, false)
	misspelled := p.checkFields(fields, path, "a descriptor", descriptorFields)
	d := &descSpec{file: p.file, line: n.Line, field: path}
	keyOK := false
	var rateLimit *field
	var shadow, quotaMode, detailed, valueToMetric bool
	var metadata map[string]any
	for _, f := range fields {
		fpath := joinField(path, f.name)
		switch f.name {
		case "key":
			if s, ok := p.str(f, fpath); ok {
				if s == "" {
					p.add(f.val.Line, fpath, "must not be empty")
				} else {
					d.key, keyOK = s, true
				}
			}
		case "value":
			d.value, _ = p.str(f, fpath)
		case "rate_limit":
			rateLimit = &f
		case "descriptors":
			d.children = p.descriptorList(f.val, fpath, depth+1, ctx)
		case "share_threshold":
			d.shareThreshold, _ = p.boolean(f, fpath)
		case "shadow_mode":
			shadow, _ = p.boolean(f, fpath)
		case "quota_mode":
			quotaMode, _ = p.boolean(f, fpath)
		case "detailed_metric":
			detailed, _ = p.boolean(f, fpath)
		case "value_to_metric":
			valueToMetric, _ = p.boolean(f, fpath)
		case "metadata":
			if isNull(f.val) {
				break
			}
			if f.val.Kind != yaml.MappingNode {
				p.add(f.val.Line, fpath, "must be a mapping, found %s", describe(f.val))
				break
			}
			metadata, _ = p.metadata(f.val, fpath, 0).(map[string]any)
		}
	}
	if _, ok := lookup(fields, "key"); !ok && !misspelled["key"] {
		p.add(n.Line, joinField(path, "key"), "missing; every descriptor needs a non-empty key")
	}
	if d.shareThreshold && !strings.Contains(d.value, "*") {
		f, _ := lookup(fields, "share_threshold")
		p.add(f.key.Line, joinField(path, "share_threshold"),
			"only allowed on a descriptor whose value is a pattern with '*'; value %q has none", d.value)
	}
	if rateLimit != nil && !isNull(rateLimit.val) {
		// A null rate_limit is no limit, as in the reference.
		d.rule = p.rateLimit(*rateLimit, joinField(path, "rate_limit"), ctx)
	}
	if d.rule != nil {
		d.rule.File, d.rule.Line = p.file, n.Line
		d.rule.Shadow, d.rule.QuotaMode = shadow, quotaMode
		d.rule.DetailedMetric, d.rule.ValueToMetric = detailed, valueToMetric
		d.rule.Metadata = metadata
	}
	if !keyOK {
		return nil
	}
	return d
}

// rateLimit parses a rate_limit mapping into a Rule whose path-dependent
// fields are still empty. It returns nil when the limit is unusable.
func (p *parser) rateLimit(f field, path string, ctx ruleContext) *Rule {
	n := f.val
	if n.Kind != yaml.MappingNode {
		p.add(n.Line, path, "must be a mapping (unit, requests_per_unit, ...), found %s", describe(n))
		return nil
	}
	fields := p.fields(n, path, false)
	misspelled := p.checkFields(fields, path, "rate_limit", rateLimitFields)
	r := &Rule{}
	ok := true
	var unitF, rpuF, algF, burstF *field
	var replaces []replaceEntry
	for _, f := range fields {
		fpath := joinField(path, f.name)
		switch f.name {
		case "unit":
			unitF = &f
			s, good := p.str(f, fpath)
			if !good {
				ok = false
				break
			}
			u, known := quota.ParseUnit(s)
			if !known && !isNull(f.val) {
				p.add(f.val.Line, fpath, "unknown unit %q; allowed: %s", s, allowedUnits)
				ok = false
				break
			}
			r.Limit.Unit = u
		case "requests_per_unit":
			rpuF = &f
			if isNull(f.val) {
				break // reported as missing below
			}
			v, good := p.whole(f, fpath, maxRequests, " (0 blocks every request)")
			ok = ok && good
			r.Limit.Requests = v
		case "unlimited":
			v, good := p.boolean(f, fpath)
			ok = ok && good
			r.Unlimited = v
		case "name":
			s, good := p.str(f, fpath)
			ok = ok && good
			r.Name = s
		case "algorithm":
			algF = &f
			a, good := p.algorithm(f, fpath)
			if !good {
				ok = false
				algF = nil // no burst check against an unknown algorithm
				break
			}
			r.Limit.Algorithm = a
		case "burst":
			burstF = &f
			v, good := p.whole(f, fpath, maxRequests, "")
			ok = ok && good
			r.Limit.Burst = v
		case "replaces":
			var good bool
			replaces, good = p.replaces(f, fpath)
			ok = ok && good
		}
	}
	for _, e := range replaces {
		// Checked after the loop: name may come after replaces.
		if r.Name != "" && e.name == r.Name {
			p.add(e.line, e.field, "names this rule's own limit %q; a limit cannot replace itself", r.Name)
			ok = false
		}
		r.Replaces = append(r.Replaces, e.name)
	}
	if r.Unlimited {
		// requests_per_unit without a unit loads beside unlimited, as the
		// reference loads it (and ignores the number); a unit does not.
		for _, ff := range []*field{unitF, algF, burstF} {
			if ff != nil && !isNull(ff.val) {
				p.add(ff.key.Line, joinField(path, ff.name),
					"not allowed with unlimited: true (an unlimited rule has no %s); remove one of them", ff.name)
				ok = false
			}
		}
		r.Limit = quota.Limit{}
	} else {
		// A misspelled field was reported as unknown; saying it is also
		// missing would only repeat that.
		if (unitF == nil || isNull(unitF.val)) && !misspelled["unit"] {
			p.add(f.key.Line, joinField(path, "unit"), "missing; allowed: %s (or unlimited: true)", allowedUnits)
			ok = false
		}
		if (rpuF == nil || isNull(rpuF.val)) && !misspelled["requests_per_unit"] {
			p.add(f.key.Line, joinField(path, "requests_per_unit"),
				"missing; give a whole number (0 blocks every request) or unlimited: true")
			ok = false
		}
		if _, has := lookup(fields, "algorithm"); !has {
			r.Limit.Algorithm = ctx.algorithm
		}
		if burstF != nil && (algF != nil || !hasField(fields, "algorithm")) && r.Limit.Algorithm != quota.TokenBucket {
			from := "set on this rate_limit"
			if algF == nil {
				from = "from " + ctx.algorithmFrom
			}
			p.add(burstF.key.Line, joinField(path, "burst"),
				"only token_bucket limits have a burst; this limit's algorithm is %s (%s); set algorithm: token_bucket or remove burst",
				r.Limit.Algorithm, from)
			ok = false
		}
	}
	if !ok {
		return nil
	}
	return r
}

func hasField(fields []field, name string) bool {
	_, ok := lookup(fields, name)
	return ok
}

// replaceEntry is one parsed replaces entry.
type replaceEntry struct {
	name  string
	line  int
	field string
}

// replaces parses a replaces list: mappings with a non-empty name.
func (p *parser) replaces(f field, path string) ([]replaceEntry, bool) {
	n := f.val
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		p.add(n.Line, path, "must be a list of {name: ...}, found %s", describe(n))
		return nil, false
	}
	var out []replaceEntry
	ok := true
	for i, item := range n.Content {
		itemPath := fmt.Sprintf("%s[%d]", path, i)
		item = p.resolve(item)
		if item == nil || !p.visit(item) {
			return out, false
		}
		if item.Kind != yaml.MappingNode {
			p.add(item.Line, itemPath, "each replaces entry must be a mapping {name: ...}, found %s", describe(item))
			ok = false
			continue
		}
		fields := p.fields(item, itemPath, false)
		p.checkFields(fields, itemPath, "a replaces entry", replacesFields)
		nf, has := lookup(fields, "name")
		if !has {
			p.add(item.Line, itemPath+".name", "missing; a replaces entry names the limit it replaces")
			ok = false
			continue
		}
		s, good := p.str(nf, itemPath+".name")
		if !good {
			ok = false
			continue
		}
		if s == "" {
			p.add(nf.key.Line, itemPath+".name", "must not be empty; a replaces entry names the limit it replaces")
			ok = false
			continue
		}
		out = append(out, replaceEntry{name: s, line: nf.val.Line, field: itemPath + ".name"})
	}
	return out, ok
}

// metadata converts a metadata node to plain Go values (map[string]any,
// []any, string, bool, int64, uint64, float64, nil) that JSON and
// structpb.NewValue both accept. Values YAML would make into other types
// (timestamps, binary) are kept as their text.
func (p *parser) metadata(n *yaml.Node, path string, depth int) any {
	if !p.visit(n) {
		return nil
	}
	if depth > maxNesting {
		p.add(n.Line, abbreviate(path), "nested more than %d levels deep", maxNesting)
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		for _, f := range p.fields(n, path, true) {
			m[f.name] = p.metadata(f.val, joinField(path, f.name), depth+1)
		}
		return m
	case yaml.SequenceNode:
		list := make([]any, 0, len(n.Content))
		for i, item := range n.Content {
			item = p.resolve(item)
			if item == nil {
				return list
			}
			list = append(list, p.metadata(item, fmt.Sprintf("%s[%d]", path, i), depth+1))
		}
		return list
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return nil
		case "!!bool", "!!int", "!!float":
			var v any
			if err := n.Decode(&v); err == nil {
				if i, ok := v.(int); ok {
					return int64(i)
				}
				return v
			}
		}
		return n.Value
	}
	return nil
}
