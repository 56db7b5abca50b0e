package descriptors

import (
	"fmt"
	"math"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/floodgate/floodgate/internal/yamlconf"
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
	rateLimitFields = []string{"unit", "requests_per_unit", "unlimited", "name", "replaces", "algorithm", "burst", "overdraw"}
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
	"overdraw":          "rate_limit",
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
// only keep a broken or hostile file from exhausting memory or the stack
// (the file size and the node budget are yamlconf.MaxFileSize and
// yamlconf.BaseNodeBudget).
const (
	// maxNesting is the deepest nesting of descriptors (and of metadata).
	maxNesting = 128
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
	valueToMetric  bool
	children       []*descSpec
}

// parseFile parses one file. It returns nil when the file holds no usable
// mapping (the problems say why).
func parseFile(name string, data []byte, opts Options, problems *yamlconf.ProblemList) *fileSpec {
	p := parser{yamlconf.NewParser(name, data, problems, style)}
	root, ok := p.Root(data)
	if !ok {
		return nil
	}
	fs := &fileSpec{name: name}
	if root == nil {
		p.Add(1, "domain", "missing; every file needs a non-empty domain")
		return fs
	}
	if root.Kind != yaml.MappingNode {
		p.Add(root.Line, "", "the file must be a mapping with domain and descriptors, found %s", yamlconf.Describe(root))
		return fs
	}
	fields := p.Fields(root, "", false)
	misspelled := p.CheckFields(fields, "", "the top level of the file", rootFields, fieldHome)
	algorithm := opts.DefaultAlgorithm
	algorithmFrom := "the default"
	if f, ok := yamlconf.Lookup(fields, "algorithm"); ok {
		if a, ok := p.algorithm(f, "algorithm"); ok {
			algorithm, algorithmFrom = a, "the file's algorithm"
		}
	}
	domainSeen := false
	for _, f := range fields {
		switch f.Name {
		case "domain":
			domainSeen = true
			fs.domainLine = f.Val.Line
			if s, ok := p.Str(f.Val, "domain"); ok {
				if s == "" {
					p.Add(f.Val.Line, "domain", "must not be empty")
				}
				fs.domain = s
			}
		case "descriptors":
			ctx := ruleContext{algorithm: algorithm, algorithmFrom: algorithmFrom}
			fs.descriptors = p.descriptorList(f.Val, "descriptors", 1, ctx)
		}
	}
	if !domainSeen && !misspelled["domain"] {
		p.Add(root.Line, "domain", "missing; every file needs a non-empty domain")
	}
	return fs
}

// algorithm reads an algorithm name (any letter case).
func (p *parser) algorithm(f yamlconf.Field, path string) (quota.Algorithm, bool) {
	s, ok := p.Str(f.Val, path)
	if !ok {
		return 0, false
	}
	a, ok := quota.ParseAlgorithm(strings.ToLower(s))
	if !ok {
		p.Add(f.Val.Line, path, "unknown algorithm %q; allowed: %s", s, allowedAlgorithms)
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
	if yamlconf.IsNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.Add(n.Line, path, "must be a list of descriptors, found %s", yamlconf.Describe(n))
		return nil
	}
	if depth > maxNesting {
		p.Add(n.Line, yamlconf.Abbreviate(path), "descriptors are nested more than %d levels deep", maxNesting)
		return nil
	}
	var out []*descSpec
	for i, item := range n.Content {
		itemPath := fmt.Sprintf("%s[%d]", path, i)
		item = p.Resolve(item)
		if item == nil || !p.Visit(item) {
			return out
		}
		if item.Kind != yaml.MappingNode {
			p.Add(item.Line, itemPath, "each descriptor must be a mapping (key, value, rate_limit, ...), found %s", yamlconf.Describe(item))
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
	fields := p.Fields(n, path, false)
	misspelled := p.CheckFields(fields, path, "a descriptor", descriptorFields, fieldHome)
	d := &descSpec{file: p.File, line: n.Line, field: path}
	keyOK := false
	var rateLimit *yamlconf.Field
	var shadow, quotaMode, detailed, valueToMetric bool
	var metadata map[string]any
	for _, f := range fields {
		fpath := yamlconf.JoinField(path, f.Name)
		switch f.Name {
		case "key":
			if s, ok := p.Str(f.Val, fpath); ok {
				if s == "" {
					p.Add(f.Val.Line, fpath, "must not be empty")
				} else {
					d.key, keyOK = s, true
				}
			}
		case "value":
			d.value, _ = p.Str(f.Val, fpath)
		case "rate_limit":
			rateLimit = &f
		case "descriptors":
			d.children = p.descriptorList(f.Val, fpath, depth+1, ctx)
		case "share_threshold":
			d.shareThreshold, _ = p.Bool(f.Val, fpath)
		case "shadow_mode":
			shadow, _ = p.Bool(f.Val, fpath)
		case "quota_mode":
			quotaMode, _ = p.Bool(f.Val, fpath)
		case "detailed_metric":
			detailed, _ = p.Bool(f.Val, fpath)
		case "value_to_metric":
			valueToMetric, _ = p.Bool(f.Val, fpath)
		case "metadata":
			if yamlconf.IsNull(f.Val) {
				break
			}
			if f.Val.Kind != yaml.MappingNode {
				p.Add(f.Val.Line, fpath, "must be a mapping, found %s", yamlconf.Describe(f.Val))
				break
			}
			metadata, _ = p.metadata(f.Val, fpath, 0).(map[string]any)
		}
	}
	if _, ok := yamlconf.Lookup(fields, "key"); !ok && !misspelled["key"] {
		p.Add(n.Line, yamlconf.JoinField(path, "key"), "missing; every descriptor needs a non-empty key")
	}
	if d.shareThreshold && !strings.Contains(d.value, "*") {
		f, _ := yamlconf.Lookup(fields, "share_threshold")
		p.Add(f.Key.Line, yamlconf.JoinField(path, "share_threshold"),
			"only allowed on a descriptor whose value is a pattern with '*'; value %q has none", d.value)
	}
	if rateLimit != nil && !yamlconf.IsNull(rateLimit.Val) {
		// A null rate_limit is no limit, as in the reference.
		d.rule = p.rateLimit(*rateLimit, yamlconf.JoinField(path, "rate_limit"), ctx)
	}
	if d.rule != nil {
		d.rule.File, d.rule.Line = p.File, n.Line
		d.rule.Shadow, d.rule.QuotaMode = shadow, quotaMode
		d.rule.DetailedMetric, d.rule.ValueToMetric = detailed, valueToMetric
		d.rule.Metadata = metadata
	}
	d.valueToMetric = valueToMetric
	if !keyOK {
		return nil
	}
	return d
}

// rateLimit parses a rate_limit mapping into a Rule whose path-dependent
// fields are still empty. It returns nil when the limit is unusable.
func (p *parser) rateLimit(f yamlconf.Field, path string, ctx ruleContext) *Rule {
	n := f.Val
	if n.Kind != yaml.MappingNode {
		p.Add(n.Line, path, "must be a mapping (unit, requests_per_unit, ...), found %s", yamlconf.Describe(n))
		return nil
	}
	fields := p.Fields(n, path, false)
	misspelled := p.CheckFields(fields, path, "rate_limit", rateLimitFields, fieldHome)
	r := &Rule{}
	ok := true
	var unitF, rpuF, algF, burstF, overdrawF *yamlconf.Field
	var replaces []replaceEntry
	for _, f := range fields {
		fpath := yamlconf.JoinField(path, f.Name)
		switch f.Name {
		case "unit":
			unitF = &f
			s, good := p.Str(f.Val, fpath)
			if !good {
				ok = false
				break
			}
			u, known := quota.ParseUnit(s)
			if !known && !yamlconf.IsNull(f.Val) {
				p.Add(f.Val.Line, fpath, "unknown unit %q; allowed: %s", s, allowedUnits)
				ok = false
				break
			}
			r.Limit.Unit = u
		case "requests_per_unit":
			rpuF = &f
			if yamlconf.IsNull(f.Val) {
				break // reported as missing below
			}
			v, good := p.Whole(f.Val, fpath, maxRequests, " (0 blocks every request)")
			ok = ok && good
			r.Limit.Requests = v
		case "unlimited":
			v, good := p.Bool(f.Val, fpath)
			ok = ok && good
			r.Unlimited = v
		case "name":
			s, good := p.Str(f.Val, fpath)
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
			v, good := p.Whole(f.Val, fpath, maxRequests, "")
			ok = ok && good
			r.Limit.Burst = v
		case "overdraw":
			overdrawF = &f
			v, good := p.Bool(f.Val, fpath)
			ok = ok && good
			r.Overdraw = v
		case "replaces":
			var good bool
			replaces, good = p.replaces(f, fpath)
			ok = ok && good
		}
	}
	for _, e := range replaces {
		// Checked after the loop: name may come after replaces.
		if r.Name != "" && e.name == r.Name {
			p.Add(e.line, e.field, "names this rule's own limit %q; a limit cannot replace itself", r.Name)
			ok = false
		}
		r.Replaces = append(r.Replaces, e.name)
	}
	if r.Unlimited {
		// requests_per_unit without a unit loads beside unlimited, as the
		// reference loads it (and ignores the number); a unit does not.
		for _, ff := range []*yamlconf.Field{unitF, algF, burstF, overdrawF} {
			if ff != nil && !yamlconf.IsNull(ff.Val) {
				p.Add(ff.Key.Line, yamlconf.JoinField(path, ff.Name),
					"not allowed with unlimited: true (an unlimited rule has no %s); remove one of them", ff.Name)
				ok = false
			}
		}
		r.Limit = quota.Limit{}
	} else {
		// A misspelled field was reported as unknown; saying it is also
		// missing would only repeat that.
		if (unitF == nil || yamlconf.IsNull(unitF.Val)) && !misspelled["unit"] {
			p.Add(f.Key.Line, yamlconf.JoinField(path, "unit"), "missing; allowed: %s (or unlimited: true)", allowedUnits)
			ok = false
		}
		if (rpuF == nil || yamlconf.IsNull(rpuF.Val)) && !misspelled["requests_per_unit"] {
			p.Add(f.Key.Line, yamlconf.JoinField(path, "requests_per_unit"),
				"missing; give a whole number (0 blocks every request) or unlimited: true")
			ok = false
		}
		if _, has := yamlconf.Lookup(fields, "algorithm"); !has {
			r.Limit.Algorithm = ctx.algorithm
		}
		if burstF != nil && (algF != nil || !hasField(fields, "algorithm")) && r.Limit.Algorithm != quota.TokenBucket {
			from := "set on this rate_limit"
			if algF == nil {
				from = "from " + ctx.algorithmFrom
			}
			p.Add(burstF.Key.Line, yamlconf.JoinField(path, "burst"),
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

func hasField(fields []yamlconf.Field, name string) bool {
	_, ok := yamlconf.Lookup(fields, name)
	return ok
}

// replaceEntry is one parsed replaces entry.
type replaceEntry struct {
	name  string
	line  int
	field string
}

// replaces parses a replaces list: mappings with a non-empty name.
func (p *parser) replaces(f yamlconf.Field, path string) ([]replaceEntry, bool) {
	n := f.Val
	if yamlconf.IsNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		p.Add(n.Line, path, "must be a list of {name: ...}, found %s", yamlconf.Describe(n))
		return nil, false
	}
	var out []replaceEntry
	ok := true
	for i, item := range n.Content {
		itemPath := fmt.Sprintf("%s[%d]", path, i)
		item = p.Resolve(item)
		if item == nil || !p.Visit(item) {
			return out, false
		}
		if item.Kind != yaml.MappingNode {
			p.Add(item.Line, itemPath, "each replaces entry must be a mapping {name: ...}, found %s", yamlconf.Describe(item))
			ok = false
			continue
		}
		fields := p.Fields(item, itemPath, false)
		p.CheckFields(fields, itemPath, "a replaces entry", replacesFields, fieldHome)
		nf, has := yamlconf.Lookup(fields, "name")
		if !has {
			p.Add(item.Line, itemPath+".name", "missing; a replaces entry names the limit it replaces")
			ok = false
			continue
		}
		s, good := p.Str(nf.Val, itemPath+".name")
		if !good {
			ok = false
			continue
		}
		if s == "" {
			p.Add(nf.Key.Line, itemPath+".name", "must not be empty; a replaces entry names the limit it replaces")
			ok = false
			continue
		}
		out = append(out, replaceEntry{name: s, line: nf.Val.Line, field: itemPath + ".name"})
	}
	return out, ok
}

// metadata converts a metadata node to plain Go values (map[string]any,
// []any, string, bool, int64, uint64, float64, nil) that JSON and
// structpb.NewValue both accept. Values YAML would make into other types
// (timestamps, binary) are kept as their text.
func (p *parser) metadata(n *yaml.Node, path string, depth int) any {
	if !p.Visit(n) {
		return nil
	}
	if depth > maxNesting {
		p.Add(n.Line, yamlconf.Abbreviate(path), "nested more than %d levels deep", maxNesting)
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		for _, f := range p.Fields(n, path, true) {
			m[f.Name] = p.metadata(f.Val, yamlconf.JoinField(path, f.Name), depth+1)
		}
		return m
	case yaml.SequenceNode:
		list := make([]any, 0, len(n.Content))
		for i, item := range n.Content {
			item = p.Resolve(item)
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
