package cacheconfig

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/floodgate/floodgate/internal/yamlconf"
	"github.com/floodgate/floodgate/pkg/httpcache"
)

// YAML nodes are read with yamlconf, as pkg/authconfig and pkg/descriptors
// read them: syntax errors, aliases under a node budget, mappings with
// duplicate and unknown fields reported, scalars; problems are
// yamlconf.Problem, printed as FILE:LINE: field: message.

// The fields each mapping accepts, in the order messages list them.
var (
	rootFields  = []string{"rules"}
	ruleFields  = []string{"name", "match", "scope", "ttl", "max_ttl", "key_headers", "ignore_query", "invalidates"}
	matchFields = []string{"hosts", "path_prefix"}
	scopeNames  = []string{"public", "tenant", "user"}
)

// maxNameLen bounds a rule name, which labels metrics.
const maxNameLen = 64

// style is the wording of the cache config's messages where the loaders
// differ; the auth config's.
var style = yamlconf.Style{
	SecondDocument:    "a file holds one document",
	NegativeAsWritten: true,
}

// parser reads one file's YAML nodes, recording every problem it finds.
type parser struct{ *yamlconf.Parser }

// ruleSpec is a parsed rule with where its name is, for duplicates.
type ruleSpec struct {
	rule     *Rule
	nameLine int
	index    int
}

// parseFile parses one cache file's rules; the rules with problems are
// left out.
func parseFile(name string, data []byte, problems *yamlconf.ProblemList) []ruleSpec {
	p := &parser{yamlconf.NewParser(name, data, problems, style)}
	root, _ := p.Root(data)
	if root == nil {
		return nil // empty: no rules, nothing cached
	}
	if root.Kind != yaml.MappingNode {
		p.Add(root.Line, "", "a cache config must be a mapping (%s), found %s", strings.Join(rootFields, ", "), yamlconf.Describe(root))
		return nil
	}
	fields, _ := p.Mapping(root, "", "the top level of a cache config", rootFields)
	f, ok := yamlconf.Lookup(fields, "rules")
	if !ok {
		return nil
	}
	items, _ := p.List(f.Val, "rules", "rules")
	var out []ruleSpec
	for i, item := range items {
		if rs, ok := p.rule(item, i); ok {
			out = append(out, rs)
		}
	}
	return out
}

var scopes = map[string]Scope{"public": Public, "tenant": Tenant, "user": User}

func (p *parser) rule(n *yaml.Node, i int) (ruleSpec, bool) {
	path := fmt.Sprintf("rules[%d]", i)
	r := &Rule{PathPrefix: DefaultPathPrefix, Scope: DefaultScope, MaxTTL: DefaultMaxTTL, File: p.File, Line: n.Line}
	rs := ruleSpec{rule: r, index: i}
	fields, ok := p.Mapping(n, path, "a cache rule", ruleFields)
	if !ok {
		return rs, false
	}
	// ttl is compared with max_ttl when both were read well.
	var ttlLine int
	var maxTTLGiven, durationBad bool
	for _, f := range fields {
		fpath := yamlconf.JoinField(path, f.Name)
		good := true
		switch f.Name {
		case "name":
			rs.nameLine = f.Val.Line
			r.Name, good = p.name(f.Val, fpath)
		case "match":
			good = p.match(f.Val, fpath, r)
		case "scope":
			var s string
			if s, good = p.NonEmpty(f.Val, fpath); !good {
				break
			}
			sc, known := scopes[s]
			if !known {
				msg := fmt.Sprintf("unknown scope %q", s)
				if sg := yamlconf.Suggest(s, scopeNames); sg != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", sg)
				}
				p.Add(f.Val.Line, fpath, "%s; allowed: %s (default public)", msg, strings.Join(scopeNames, ", "))
				good = false
				break
			}
			r.Scope = sc
		case "ttl":
			r.TTL, good = p.Duration(f.Val, fpath, 0, MaxMaxTTL)
			ttlLine = f.Val.Line
			durationBad = durationBad || !good
		case "max_ttl":
			var d time.Duration
			if d, good = p.Duration(f.Val, fpath, MinMaxTTL, MaxMaxTTL); good {
				r.MaxTTL, maxTTLGiven = d, true
			}
			durationBad = durationBad || !good
		case "key_headers":
			r.KeyHeaders, good = p.keyHeaders(f.Val, fpath)
		case "ignore_query":
			r.IgnoreQuery, good = p.uniqueList(f.Val, fpath, "query parameter names", func(s string) (string, string) { return s, "" })
		case "invalidates":
			r.Invalidates, good = p.uniqueList(f.Val, fpath, "path prefixes", func(s string) (string, string) { return s, checkPrefix(s) })
		}
		ok = ok && good
	}
	if _, given := yamlconf.Lookup(fields, "name"); !given {
		p.Add(n.Line, yamlconf.JoinField(path, "name"), "missing; every rule needs a unique name (its metrics label)")
		ok = false
	}
	if ttlLine > 0 && !durationBad && r.TTL > r.MaxTTL {
		if maxTTLGiven {
			p.Add(ttlLine, yamlconf.JoinField(path, "ttl"), "%v is more than max_ttl %v, which caps every freshness", r.TTL, r.MaxTTL)
		} else {
			p.Add(ttlLine, yamlconf.JoinField(path, "ttl"), "%v is more than max_ttl, which defaults to %v; raise max_ttl too", r.TTL, DefaultMaxTTL)
		}
		ok = false
	}
	return rs, ok
}

// name reads a rule name: it labels Prometheus metrics, so letters,
// digits, '_', '.' and '-' only.
func (p *parser) name(n *yaml.Node, path string) (string, bool) {
	s, ok := p.NonEmpty(n, path)
	if !ok {
		return "", false
	}
	if len(s) > maxNameLen {
		p.Add(n.Line, path, "longer than %d characters (%d); a rule name labels metrics", maxNameLen, len(s))
		return "", false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			p.Add(n.Line, path, "%s has a character other than letters, digits, '_', '.' and '-' (a rule name labels metrics)", yamlconf.Describe(n))
			return "", false
		}
	}
	return s, true
}

func (p *parser) match(n *yaml.Node, path string, r *Rule) bool {
	fields, ok := p.Mapping(n, path, "match", matchFields)
	if !ok {
		return false
	}
	for _, f := range fields {
		fpath := yamlconf.JoinField(path, f.Name)
		switch f.Name {
		case "hosts":
			good := p.Items(f.Val, fpath, "host names", "must list at least one host; leave out hosts to match any host", func(item *yaml.Node, ipath, s string) bool {
				h, msg := compileHost(s)
				if msg != "" {
					p.Add(item.Line, ipath, "%s", msg)
					return false
				}
				if slices.Contains(r.Hosts, h) {
					p.Add(item.Line, ipath, "%s is listed twice", h)
					return false
				}
				r.Hosts = append(r.Hosts, h)
				return true
			})
			ok = ok && good
			slices.Sort(r.Hosts) // Match searches them
		case "path_prefix":
			s, good := p.Str(f.Val, fpath)
			if !good {
				ok = false
				break
			}
			if s == "" {
				s = DefaultPathPrefix
			}
			if msg := checkPrefix(s); msg != "" {
				p.Add(f.Val.Line, fpath, "%s", msg)
				ok = false
				break
			}
			r.PathPrefix = s
		}
	}
	return ok
}

// checkPrefix says what is wrong with a path prefix, or "".
func checkPrefix(s string) string {
	switch {
	case !strings.HasPrefix(s, "/"):
		return fmt.Sprintf("must start with '/', found %q", s)
	case strings.ContainsAny(s, "?#"):
		return "must not hold '?' or '#': paths are matched without their query"
	}
	return ""
}

// compileHost lower-cases a configured host and checks its form; msg says
// what is wrong. "[::1]" is kept as "::1", as Match sees it.
func compileHost(s string) (host, msg string) {
	h := strings.ToLower(s)
	if strings.HasPrefix(h, "[") {
		if !strings.HasSuffix(h, "]") || net.ParseIP(h[1:len(h)-1]) == nil {
			return "", fmt.Sprintf("%q is not a bracketed IPv6 address; give the host without a port (any port matches)", s)
		}
		return h[1 : len(h)-1], ""
	}
	if strings.Count(h, ":") == 1 {
		return "", fmt.Sprintf("%q has a port; give the host alone (any port matches)", s)
	}
	if strings.Contains(h, "*") {
		return "", fmt.Sprintf("%q: wildcards are not supported in cache rules; list each host, or leave out hosts to match any host", s)
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" || strings.ContainsAny(h, "/ \t?#@") || strings.HasPrefix(h, ".") || strings.Contains(h, "..") {
		return "", fmt.Sprintf("%q is not a host name", s)
	}
	return h, ""
}

// keyHeaders reads key_headers: header names, lower-cased, never
// hop-by-hop (they are not the client's to set end to end) nor
// x-floodgate-* (identity comes only from the ext_authz metadata).
func (p *parser) keyHeaders(n *yaml.Node, path string) ([]string, bool) {
	return p.uniqueList(n, path, "header names", func(s string) (string, string) {
		h := strings.ToLower(s)
		switch {
		case !isToken(h):
			return "", fmt.Sprintf("%q is not a header name (letters, digits and !#$&'*+-.^_`|~)", s)
		case httpcache.HopByHop(h, nil):
			return "", fmt.Sprintf("%s is a hop-by-hop header: it is not forwarded end to end, so it cannot key a cached response", h)
		case strings.HasPrefix(h, "x-floodgate-"):
			return "", fmt.Sprintf("%s is an identity header: a user or tenant rule keys on the verified identity from the ext_authz metadata, never on request headers (a client could set them); use scope: user or scope: tenant", h)
		case h == "authorization" || h == "cookie":
			return "", fmt.Sprintf("%s carries credentials, which must not key (and so be held in) cache entries; use scope: user or scope: tenant to key on the verified identity", h)
		case h == "host":
			return "", "host is always in the key; leave it out"
		}
		return h, ""
	})
}

// uniqueList reads a list of non-empty strings, each checked and
// normalized by check (which returns the value kept, or a message), with
// no value twice; the result is sorted.
func (p *parser) uniqueList(n *yaml.Node, path, what string, check func(string) (string, string)) ([]string, bool) {
	items, ok := p.List(n, path, what)
	var out []string
	for i, item := range items {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		s, good := p.NonEmpty(item, ipath)
		if !good {
			ok = false
			continue
		}
		v, msg := check(s)
		switch {
		case msg != "":
			p.Add(item.Line, ipath, "%s", msg)
			ok = false
		case slices.Contains(out, v):
			p.Add(item.Line, ipath, "%s is listed twice", v)
			ok = false
		default:
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out, ok
}

// isToken reports whether s is an RFC 9110 token (a header name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}
