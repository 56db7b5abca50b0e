// Package descriptors loads, validates and compiles rate-limit descriptor
// config in envoyproxy/ratelimit's YAML format, plus floodgate's extensions
// (algorithm, burst, overdraw), and matches request descriptors against it.
//
// Loading reports every problem in the config, each with its file, line and
// field. The compiled Config is immutable and is shared by concurrent
// requests; Domain.Match walks it without allocating.
package descriptors

import (
	"fmt"
	"slices"
	"strings"

	"github.com/floodgate/floodgate/internal/yamlconf"
	"github.com/floodgate/floodgate/pkg/quota"
)

// Options changes how files are combined into a Config.
type Options struct {
	// MergeDomains lets several files define one domain: their descriptor
	// trees are merged (a key and value defined twice at one level is still
	// an error). When false, a domain in a second file is an error.
	MergeDomains bool
	// DefaultAlgorithm is the algorithm of limits whose file and
	// rate_limit name none; the zero value is sliding_window.
	DefaultAlgorithm quota.Algorithm
}

// Config is a compiled config: every domain's descriptor tree. It is
// immutable once built and safe for concurrent use.
type Config struct {
	domains map[string]*Domain
	sorted  []*Domain
	defAlg  quota.Algorithm
}

// DefaultAlgorithm is the algorithm the config was built with for limits
// that name none (Options.DefaultAlgorithm); Envoy's overrides of
// descriptors that match no rule count with it too.
func (c *Config) DefaultAlgorithm() quota.Algorithm { return c.defAlg }

// Domain is one domain's compiled descriptor tree.
type Domain struct {
	// Name is the domain, as Envoy's rate-limit filter sends it.
	Name string
	// Files are the files that define the domain, in load order (more than
	// one only when domains are merged).
	Files []string

	root  node
	rules []*Rule
}

// PathEntry is one level of a rule's descriptor path.
type PathEntry struct {
	Key string `json:"key"`
	// Value is the configured value, a pattern when it holds '*', or ""
	// when the level matches any value of the key.
	Value string `json:"value,omitempty"`
	// ValueToMetric is the level's value_to_metric: envoyproxy/ratelimit
	// names the request's value at this level in the stat key.
	ValueToMetric bool `json:"-"`
}

// Rule is one configured limit: a descriptor with a rate_limit. Rules are
// shared by every request that matches them and must not be modified.
type Rule struct {
	// Name is rate_limit.name, "" if none.
	Name string
	// StatName names the rule stably from its descriptor path, for metric
	// labels and RateLimit header list members; it is unique within the
	// domain. As in envoyproxy/ratelimit's stat keys (without the domain),
	// each level is its key, then "_" and the configured value or pattern
	// when it has one, and levels are joined by ".": "tenant.user",
	// "generic_key_login", "path_/search*". Bytes outside printable ASCII,
	// and '"', '\' and '%', are written %XX, so the name is safe inside a
	// quoted header string. Should two rules still get one name (key "a_b"
	// and key "a" with value "b"), the later in file order gets "~2" (then
	// "~3", ...) appended.
	StatName string
	// Limit is the limit. Its Algorithm is the rule's, else the file's,
	// else Options.DefaultAlgorithm (sliding_window); Burst is 0 unless
	// configured (0 means Requests). Zero for an Unlimited rule.
	Limit quota.Limit
	// Overdraw is rate_limit.overdraw (an extension): a charge bigger than
	// what remains is taken in full, the counter going past its limit (a
	// bucket below zero), and the hits that follow are refused until the
	// debt is paid; its hits are taken even when the request is rejected.
	Overdraw bool
	// UnitName is the unit as a lower-case config name ("minute"), "" for
	// an Unlimited rule.
	UnitName string
	// Unlimited is rate_limit.unlimited: the descriptor is never limited.
	Unlimited bool
	// Shadow is shadow_mode: over-limit answers are counted and reported
	// but never reject the request.
	Shadow bool
	// Replaces are the names of the limits this one replaces when both
	// apply to one request (rate_limit.replaces).
	Replaces []string
	// QuotaMode, DetailedMetric and ValueToMetric are the descriptor's
	// quota_mode, detailed_metric and value_to_metric.
	QuotaMode, DetailedMetric, ValueToMetric bool
	// File and Line say where the rule's descriptor is.
	File string
	Line int
	// Path is the rule's descriptor path from the top level.
	Path []PathEntry
	// SharedValue has one element per level of Path. "" means the
	// request's value names the counter at that level (one counter per
	// value, as for any pattern); otherwise the level's pattern is used
	// instead, because share_threshold is set there, so every value that
	// matches the pattern shares one counter.
	SharedValue []string
	// Metadata is the descriptor's metadata as configured, or nil.
	Metadata map[string]any
}

// Source is one config file's name (used in problems) and contents.
type Source struct {
	Name string
	Data []byte
}

// Parse compiles one file's contents; name is used in problems.
func Parse(name string, data []byte, opts Options) (*Config, error) {
	return Build([]Source{{Name: name, Data: data}}, opts)
}

// Build compiles files, each defining one domain, into a Config. It returns
// Problems listing every problem found when the config is not valid.
func Build(sources []Source, opts Options) (*Config, error) {
	var problems yamlconf.ProblemList
	order := map[string]int{}
	var specs []*fileSpec
	for i, src := range sources {
		if _, dup := order[src.Name]; !dup {
			order[src.Name] = i
		}
		if fs := parseFile(src.Name, src.Data, opts, &problems); fs != nil {
			specs = append(specs, fs)
		}
	}
	cfg := compile(specs, opts, &problems)
	if err := problems.Result(order); err != nil {
		return nil, err
	}
	return cfg, nil
}

// compile builds the domains' trees from parsed files.
func compile(specs []*fileSpec, opts Options, problems *yamlconf.ProblemList) *Config {
	cfg := &Config{domains: map[string]*Domain{}, defAlg: opts.DefaultAlgorithm}
	where := map[string]string{} // domain -> "file:line" of its first file
	for _, fs := range specs {
		if fs.domain == "" {
			continue // reported by the parser
		}
		d := cfg.domains[fs.domain]
		if d != nil && !opts.MergeDomains {
			problems.Add(Problem{File: fs.name, Line: fs.domainLine, Field: "domain",
				Msg: fmt.Sprintf("duplicate domain %q, also defined at %s; each domain must be in one file unless domains are merged (--merge-domains)",
					fs.domain, where[fs.domain])})
			// Still build the file's tree, alone, to report its own problems.
			scratch := &Domain{Name: fs.domain, Files: []string{fs.name}}
			b := builder{domain: scratch, problems: problems}
			b.insert(&scratch.root, fs.descriptors, nil, nil)
			continue
		}
		if d == nil {
			d = &Domain{Name: fs.domain}
			cfg.domains[fs.domain] = d
			cfg.sorted = append(cfg.sorted, d)
			where[fs.domain] = fmt.Sprintf("%s:%d", fs.name, fs.domainLine)
		}
		d.Files = append(d.Files, fs.name)
		b := builder{domain: d, problems: problems}
		b.insert(&d.root, fs.descriptors, nil, nil)
	}
	slices.SortFunc(cfg.sorted, func(a, b *Domain) int { return strings.Compare(a.Name, b.Name) })
	for _, d := range cfg.sorted {
		nameStats(d.rules)
	}
	return cfg
}

// builder inserts parsed descriptors into a domain's tree.
type builder struct {
	domain   *Domain
	problems *yamlconf.ProblemList
}

// insert adds specs as children of parent, whose path from the top is path;
// shared holds the share_threshold pattern (or "") of each level of path.
func (b *builder) insert(parent *node, specs []*descSpec, path []PathEntry, shared []string) {
	for _, s := range specs {
		if prev := parent.find(s.key, s.value); prev != nil {
			what := fmt.Sprintf("key %q", s.key)
			if s.value != "" {
				what += fmt.Sprintf(" with value %q", s.value)
			}
			b.problems.Add(Problem{File: s.file, Line: s.line, Field: s.field,
				Msg: fmt.Sprintf("duplicate descriptor: %s is already defined at this level at %s:%d", what, prev.file, prev.line)})
			continue
		}
		n := parent.add(s.key, s.value)
		n.file, n.line = s.file, s.line
		p := append(slices.Clip(path), PathEntry{Key: s.key, Value: s.value, ValueToMetric: s.valueToMetric})
		sv := ""
		if s.shareThreshold {
			sv = s.value
		}
		sh := append(slices.Clip(shared), sv)
		if r := s.rule; r != nil {
			r.Path = p
			r.SharedValue = sh
			r.UnitName = quota.UnitName(r.Limit.Unit)
			n.rule = r
			b.domain.rules = append(b.domain.rules, r)
		}
		b.insert(n, s.children, p, sh)
	}
}

// Domain returns the named domain, or nil when there is none.
func (c *Config) Domain(name string) *Domain {
	if c == nil {
		return nil
	}
	return c.domains[name]
}

// Domains returns the domains sorted by name.
func (c *Config) Domains() []*Domain {
	if c == nil {
		return nil
	}
	return slices.Clone(c.sorted)
}

// Rules returns every rule of the domain (unlimited ones included) in file
// order.
func (d *Domain) Rules() []*Rule {
	if d == nil {
		return nil
	}
	return slices.Clone(d.rules)
}
