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
	"time"

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

// units maps the config names of units (lower case) to their lengths.
// They are the units of Envoy's RateLimitResponse.RateLimit.Unit; a month
// and a year have fixed lengths, as counters need a fixed window.
var units = map[string]time.Duration{
	"second": time.Second,
	"minute": time.Minute,
	"hour":   time.Hour,
	"day":    24 * time.Hour,
	"week":   7 * 24 * time.Hour,
	"month":  30 * 24 * time.Hour,
	"year":   365 * 24 * time.Hour,
}

const allowedUnits = "second, minute, hour, day, week, month, year (any letter case)"

const allowedAlgorithms = "sliding_window, fixed_window, token_bucket"

// unitName returns the config name of a unit length, or "" when it is not
// one of the units.
func unitName(d time.Duration) string {
	for name, u := range units {
		if u == d {
			return name
		}
	}
	return ""
}

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

// yamlLine finds the line number in yaml.v3's syntax error messages.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

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
	p.checkFields(fields, "", "the top level of the file", rootFields)
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
	if !domainSeen {
		p.add(root.Line, "domain", "missing; every file needs a non-empty domain")
	}
	return fs
}

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
		if len(v) > 40 {
			v = v[:40] + "…"
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

// checkFields reports the fields that a mapping of this kind (where) does
// not accept, with a hint when the name is a misspelling or belongs
// elsewhere. It returns the allowed fields it suggested, so that the caller
// does not also report them as missing.
func (p *parser) checkFields(fields []field, path, where string, allowed []string) (suggested map[string]bool) {
	for _, f := range fields {
		if contains(allowed, f.name) {
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

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest returns the allowed field that name is likely a misspelling of:
// the same but for letter case, '_' and '-', or at most two edits away.
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
	if len(n) < 4 {
		return ""
	}
	for _, a := range allowed {
		if editDistance(norm(a), n) <= 2 {
			return a
		}
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
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
	p.checkFields(fields, path, "a descriptor", descriptorFields)
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
	if _, ok := lookup(fields, "key"); !ok {
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
			u, known := units[strings.ToLower(s)]
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
		for _, ff := range []*field{unitF, rpuF, algF, burstF} {
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
