package authconfig

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/floodgate/floodgate/internal/yamlconf"
	"github.com/floodgate/floodgate/pkg/jwtauth"
	"github.com/floodgate/floodgate/pkg/quota"
)

// The fields each mapping accepts, in the order messages list them.
var (
	rootFields       = []string{"api_keys", "jwt", "client_address", "failed_auth_limit", "policies"}
	apiKeysFields    = []string{"header", "files"}
	jwtFields        = []string{"issuer", "audiences", "jwks_file", "jwks_url", "jwks_refresh", "algorithms", "clock_skew", "claims", "tenants"}
	claimsFields     = []string{"tenant", "tier", "user"}
	clientAddrFields = []string{"trusted_hops"}
	limitFields      = []string{"unit", "requests_per_unit"}
	policyFields     = []string{"name", "match", "auth", "tiers", "strip_credentials", "rate_limit"}
	matchFields      = []string{"hosts", "path_prefix", "methods"}
	rateLimitFields  = []string{"domain", "descriptors"}
	entryFields      = []string{"key", "value"}
	keysFileFields   = []string{"keys"}
	keyFields        = []string{"id", "sha256", "tenant", "tier", "user", "expires"}
)

// Defaults, as the contract gives them.
const (
	DefaultHeader      = "x-api-key"
	DefaultJWKSRefresh = 5 * time.Minute
	DefaultClockSkew   = 30 * time.Second
)

// DefaultAlgorithms are the JWT algorithms an issuer allows when its entry
// names none.
var DefaultAlgorithms = []string{"RS256", "ES256", "EdDSA"}

// knownAlgorithms are the asymmetric JWS algorithms an issuer may allow.
var knownAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Bounds on settings; beyond them a value is a mistake.
const (
	minJWKSRefresh = 10 * time.Second // an issuer's JWKS is fetched at most once per 10 s
	maxJWKSRefresh = 24 * time.Hour
	maxClockSkew   = 10 * time.Minute
	maxTrustedHops = 64
	maxRequests    = math.MaxUint32
	// maxTimeLen is the longest RFC 3339 time (nanoseconds and an offset).
	maxTimeLen = len("2006-01-02T15:04:05.999999999-07:00")
)

// authSpec is one parsed auth file, before files are merged.
type authSpec struct {
	name string
	// The sections a file may hold once in a directory; nil when absent.
	apiKeys         *apiKeysSpec
	clientAddress   *sectionAt
	failedAuthLimit *sectionAt
	jwt             []jwtauth.IssuerConfig
	jwks            []fileRef // each jwt entry's jwks_file (path "" when none)
	trustedHops     int
	limit           *quota.Limit
	policies        []*policySpec
}

// sectionAt says where a section is, for "also given in" messages.
type sectionAt struct{ line int }

type apiKeysSpec struct {
	sectionAt
	header string
	files  []fileRef
}

// fileRef is a file named in the config: its path resolved against the
// naming file, and where it is named.
type fileRef struct {
	path  string
	line  int
	field string
}

type policySpec struct {
	policy   *Policy
	nameLine int
	authLine int
	authOK   bool
	domain   int // line of rate_limit.domain
	index    int // in its file, for field paths
}

// resolvePath makes a path named in file relative to file's directory
// (an absolute path is kept).
func resolvePath(file, rel string) string {
	if filepath.IsAbs(rel) {
		return filepath.Clean(rel)
	}
	return filepath.Join(filepath.Dir(file), rel)
}

// parseAuth parses one auth file; nil when it holds nothing usable.
func parseAuth(name string, data []byte, problems *yamlconf.ProblemList) *authSpec {
	p := newParser(name, data, problems)
	spec := &authSpec{name: name}
	root, _ := p.Root(data)
	if root == nil {
		return spec // empty: no policies, as allowed
	}
	if root.Kind != yaml.MappingNode {
		p.Add(root.Line, "", "an auth config must be a mapping (%s), found %s", strings.Join(rootFields, ", "), yamlconf.Describe(root))
		return spec
	}
	fields, _ := p.Mapping(root, "", "the top level of an auth config", rootFields)
	for _, f := range fields {
		switch f.Name {
		case "api_keys":
			spec.apiKeys = p.apiKeys(f)
		case "jwt":
			items, _ := p.List(f.Val, "jwt", "issuers")
			for i, item := range items {
				if iss, jwks, ok := p.issuer(item, fmt.Sprintf("jwt[%d]", i)); ok {
					spec.jwt = append(spec.jwt, iss)
					spec.jwks = append(spec.jwks, jwks)
				}
			}
		case "client_address":
			spec.clientAddress = &sectionAt{f.Key.Line}
			cf, _ := p.Mapping(f.Val, "client_address", "client_address", clientAddrFields)
			for _, c := range cf {
				if c.Name == "trusted_hops" {
					v, _ := p.Whole(c.Val, "client_address.trusted_hops", maxTrustedHops, "")
					spec.trustedHops = int(v)
				}
			}
		case "failed_auth_limit":
			if yamlconf.IsNull(f.Val) {
				break // no limit, as a null rate_limit is none
			}
			spec.failedAuthLimit = &sectionAt{f.Key.Line}
			spec.limit = p.failedAuthLimit(f)
		case "policies":
			items, _ := p.List(f.Val, "policies", "policies")
			for i, item := range items {
				if ps := p.policy(item, i); ps != nil {
					spec.policies = append(spec.policies, ps)
				}
			}
		}
	}
	return spec
}

func (p *parser) apiKeys(f yamlconf.Field) *apiKeysSpec {
	s := &apiKeysSpec{sectionAt: sectionAt{f.Key.Line}, header: DefaultHeader}
	fields, _ := p.Mapping(f.Val, "api_keys", "api_keys", apiKeysFields)
	for _, af := range fields {
		path := "api_keys." + af.Name
		switch af.Name {
		case "header":
			h, ok := p.NonEmpty(af.Val, path)
			if !ok {
				break
			}
			switch {
			case !isToken(h):
				p.Add(af.Val.Line, path, "%q is not a header name (letters, digits and !#$&'*+-.^_`|~)", h)
			case strings.EqualFold(h, "authorization"):
				p.Add(af.Val.Line, path, "must not be authorization: that header already takes `ApiKey <key>` and `Bearer <token>`; name another header or leave out header for x-api-key")
			default:
				s.header = strings.ToLower(h)
			}
		case "files":
			items, _ := p.List(af.Val, path, "keys file paths")
			for i, item := range items {
				ipath := fmt.Sprintf("%s[%d]", path, i)
				if rel, ok := p.NonEmpty(item, ipath); ok {
					s.files = append(s.files, fileRef{path: resolvePath(p.File, rel), line: item.Line, field: ipath})
				}
			}
		}
	}
	return s
}

// issuer parses one jwt entry and applies the defaults; jwks is its
// jwks_file (path "" when it has none).
func (p *parser) issuer(n *yaml.Node, path string) (iss jwtauth.IssuerConfig, jwks fileRef, ok bool) {
	jwks = fileRef{field: yamlconf.JoinField(path, "jwks_file")}
	iss = jwtauth.IssuerConfig{Refresh: DefaultJWKSRefresh, ClockSkew: DefaultClockSkew,
		Algorithms: slices.Clone(DefaultAlgorithms), File: p.File, Line: n.Line}
	fields, ok := p.Mapping(n, path, "a jwt entry", jwtFields)
	if !ok {
		return iss, jwks, false
	}
	has := map[string]*yaml.Node{}
	for _, f := range fields {
		fpath := yamlconf.JoinField(path, f.Name)
		has[f.Name] = f.Key
		good := true
		switch f.Name {
		case "issuer":
			iss.Issuer, good = p.NonEmpty(f.Val, fpath)
		case "audiences":
			iss.Audiences, good = p.StrList(f.Val, fpath)
			if good && len(iss.Audiences) == 0 {
				p.Add(f.Val.Line, fpath, "must list at least one audience; a token's aud must contain one of them")
				good = false
			}
		case "jwks_file":
			var rel string
			if rel, good = p.NonEmpty(f.Val, fpath); good {
				iss.JWKSFile = resolvePath(p.File, rel)
				jwks = fileRef{path: iss.JWKSFile, line: f.Val.Line, field: fpath}
			}
		case "jwks_url":
			var u string
			if u, good = p.NonEmpty(f.Val, fpath); good {
				if msg := checkJWKSURL(u); msg != "" {
					p.Add(f.Val.Line, fpath, "%s", msg)
					good = false
				} else {
					iss.JWKSURL = u
				}
			}
		case "jwks_refresh":
			iss.Refresh, good = p.Duration(f.Val, fpath, minJWKSRefresh, maxJWKSRefresh)
		case "algorithms":
			iss.Algorithms, good = p.algorithms(f.Val, fpath)
		case "clock_skew":
			iss.ClockSkew, good = p.Duration(f.Val, fpath, 0, maxClockSkew)
		case "claims":
			iss.Claims, good = p.claims(f.Val, fpath, n.Line)
		case "tenants":
			iss.Tenants, good = p.StrList(f.Val, fpath)
		}
		ok = ok && good
	}
	if _, given := has["issuer"]; !given {
		p.Add(n.Line, yamlconf.JoinField(path, "issuer"), "missing; the exact iss of this issuer's tokens")
		ok = false
	}
	if _, given := has["audiences"]; !given {
		p.Add(n.Line, yamlconf.JoinField(path, "audiences"), "missing; a jwt entry must list the audiences its tokens are for (a token's aud must contain one)")
		ok = false
	}
	if _, given := has["claims"]; !given {
		p.Add(n.Line, yamlconf.JoinField(path, "claims"), "missing; name the claims that give the tenant and tier (claims: {tenant: ..., tier: ...})")
		ok = false
	}
	fileKey, hasFile := has["jwks_file"]
	urlKey, hasURL := has["jwks_url"]
	switch {
	case hasFile && hasURL:
		p.Add(urlKey.Line, yamlconf.JoinField(path, "jwks_url"), "give jwks_file or jwks_url, not both (jwks_file at line %d)", fileKey.Line)
		ok = false
	case !hasFile && !hasURL:
		p.Add(n.Line, yamlconf.JoinField(path, "jwks_file"), "missing; give jwks_file (a path) or jwks_url (https://...) for the issuer's keys")
		ok = false
	}
	if k, given := has["jwks_refresh"]; given && hasFile && !hasURL {
		p.Add(k.Line, yamlconf.JoinField(path, "jwks_refresh"), "only for jwks_url; a jwks_file is read again when it changes")
		ok = false
	}
	return iss, jwks, ok
}

// checkJWKSURL returns what is wrong with a JWKS URL, or "".
func checkJWKSURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Sprintf("not a URL: %v", err)
	}
	host := u.Hostname()
	switch u.Scheme {
	case "https":
		if host == "" {
			return fmt.Sprintf("%q has no host", s)
		}
		return ""
	case "http":
		if host == "" {
			return fmt.Sprintf("%q has no host", s)
		}
		if isLoopback(host) {
			return ""
		}
		return fmt.Sprintf("http:// is allowed only to a loopback host (localhost, 127.0.0.0/8, ::1), not %q: keys fetched in the clear can be replaced; use https://", host)
	}
	return fmt.Sprintf("must be an https:// URL (http:// only to loopback), found scheme %q", u.Scheme)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (p *parser) algorithms(n *yaml.Node, path string) ([]string, bool) {
	items, ok := p.List(n, path, "algorithms")
	if !ok {
		return nil, false
	}
	var out []string
	for i, item := range items {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		s, good := p.NonEmpty(item, ipath)
		if !good {
			ok = false
			continue
		}
		allowed := strings.Join(knownAlgorithms, ", ")
		switch {
		case slices.Contains(knownAlgorithms, s):
			if slices.Contains(out, s) {
				p.Add(item.Line, ipath, "%s is listed twice", s)
				ok = false
				continue
			}
			out = append(out, s)
			continue
		case strings.EqualFold(s, "none"):
			p.Add(item.Line, ipath, "none is never allowed: an unsigned token proves nothing; allowed: %s", allowed)
		case len(s) >= 2 && strings.EqualFold(s[:2], "HS"):
			p.Add(item.Line, ipath, "%s is never allowed: HMAC needs a shared secret that every verifier could sign with, and invites algorithm confusion with public keys; allowed: %s", s, allowed)
		default:
			msg := fmt.Sprintf("unknown algorithm %q", s)
			for _, a := range knownAlgorithms {
				if strings.EqualFold(a, s) {
					msg += fmt.Sprintf(" (did you mean %q? names are case-sensitive)", a)
				}
			}
			p.Add(item.Line, ipath, "%s; allowed: %s", msg, allowed)
		}
		ok = false
	}
	if ok && len(out) == 0 {
		p.Add(n.Line, path, "must list at least one algorithm, or be left out for %s", strings.Join(DefaultAlgorithms, ", "))
		ok = false
	}
	return out, ok
}

func (p *parser) claims(n *yaml.Node, path string, entryLine int) (jwtauth.ClaimNames, bool) {
	var c jwtauth.ClaimNames
	fields, ok := p.Mapping(n, path, "claims", claimsFields)
	if !ok {
		return c, false
	}
	for _, f := range fields {
		fpath := yamlconf.JoinField(path, f.Name)
		s, good := p.NonEmpty(f.Val, fpath)
		ok = ok && good
		switch f.Name {
		case "tenant":
			c.Tenant = s
		case "tier":
			c.Tier = s
		case "user":
			c.User = s
		}
	}
	line := n.Line
	if yamlconf.IsNull(n) {
		line = entryLine
	}
	for _, need := range []struct{ name, got string }{{"tenant", c.Tenant}, {"tier", c.Tier}} {
		if _, given := yamlconf.Lookup(fields, need.name); !given {
			p.Add(line, yamlconf.JoinField(path, need.name), "missing; name the claim that gives the %s (every identity has a tenant and a tier, as keys do)", need.name)
			ok = false
		}
	}
	return c, ok
}

func (p *parser) failedAuthLimit(f yamlconf.Field) *quota.Limit {
	fields, ok := p.Mapping(f.Val, "failed_auth_limit", "failed_auth_limit", limitFields)
	if !ok {
		return nil
	}
	// Fixed windows: "once an address's count in the window reaches
	// requests_per_unit, every further request in that window" is 429.
	l := &quota.Limit{Algorithm: quota.FixedWindow}
	var unitOK, rpuOK bool
	for _, lf := range fields {
		path := "failed_auth_limit." + lf.Name
		switch lf.Name {
		case "unit":
			s, good := p.NonEmpty(lf.Val, path)
			if !good {
				unitOK = true // reported
				ok = false
				break
			}
			u, known := quota.ParseUnit(s)
			unitOK = true
			if !known {
				p.Add(lf.Val.Line, path, "unknown unit %q; allowed: %s", s, quota.AllowedUnits)
				ok = false
				break
			}
			l.Unit = u
		case "requests_per_unit":
			rpuOK = true
			v, good := p.Whole(lf.Val, path, maxRequests, "")
			if good && v < 1 {
				p.Add(lf.Val.Line, path, "must be at least 1, found 0 (leave out failed_auth_limit for no limit)")
				good = false
			}
			ok = ok && good
			l.Requests = v
		}
	}
	if !unitOK {
		p.Add(f.Key.Line, "failed_auth_limit.unit", "missing; allowed: %s", quota.AllowedUnits)
		ok = false
	}
	if !rpuOK {
		p.Add(f.Key.Line, "failed_auth_limit.requests_per_unit", "missing; the rejected credentials a client address may send per unit (at least 1)")
		ok = false
	}
	if !ok {
		return nil
	}
	return l
}

var authNames = map[string]Auth{"none": AuthNone, "api_key": AuthAPIKey, "jwt": AuthJWT, "any": AuthAny}

func (p *parser) policy(n *yaml.Node, i int) *policySpec {
	path := fmt.Sprintf("policies[%d]", i)
	fields, ok := p.Mapping(n, path, "a policy", policyFields)
	if !ok {
		return nil
	}
	pol := &Policy{File: p.File, Line: n.Line, index: i}
	ps := &policySpec{policy: pol, index: i}
	var tiersKey *yaml.Node
	for _, f := range fields {
		fpath := yamlconf.JoinField(path, f.Name)
		switch f.Name {
		case "name":
			ps.nameLine = f.Val.Line
			if s, good := p.label(f.Val, fpath); good {
				pol.Name = s
			} else {
				ok = false
			}
		case "match":
			ok = p.match(f.Val, fpath, pol) && ok
		case "auth":
			ps.authLine = f.Val.Line
			s, good := p.Str(f.Val, fpath)
			if !good {
				ok = false
				break
			}
			a, known := authNames[s]
			if !known {
				msg := fmt.Sprintf("unknown auth %q", s)
				if sg := yamlconf.Suggest(s, []string{"none", "api_key", "jwt", "any"}); sg != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", sg)
				}
				p.Add(f.Val.Line, fpath, "%s; allowed: none, api_key, jwt, any", msg)
				ok = false
				break
			}
			pol.Auth, ps.authOK = a, true
		case "tiers":
			tiersKey = f.Key
			tiers, good := p.StrList(f.Val, fpath)
			if good && len(tiers) == 0 {
				p.Add(f.Val.Line, fpath, "must list at least one tier; leave out tiers to allow every tier")
				good = false
			}
			if good {
				pol.Tiers = map[string]bool{}
				for _, t := range tiers {
					pol.Tiers[t] = true
				}
			}
			ok = ok && good
		case "strip_credentials":
			b, good := p.Bool(f.Val, fpath)
			pol.StripCredentials = b
			ok = ok && good
		case "rate_limit":
			if yamlconf.IsNull(f.Val) {
				break
			}
			rl, line, good := p.rateLimit(f.Val, fpath)
			pol.RateLimit, ps.domain = rl, line
			ok = ok && good
		}
	}
	if _, given := yamlconf.Lookup(fields, "name"); !given {
		p.Add(n.Line, yamlconf.JoinField(path, "name"), "missing; every policy needs a unique name (sent upstream as x-floodgate-policy)")
		ok = false
	}
	if _, given := yamlconf.Lookup(fields, "auth"); !given {
		p.Add(n.Line, yamlconf.JoinField(path, "auth"), "missing; say which credential the policy takes: none, api_key, jwt or any")
		ok = false
	}
	if tiersKey != nil && ps.authOK && pol.Auth == AuthNone {
		p.Add(tiersKey.Line, yamlconf.JoinField(path, "tiers"), "not allowed with auth: none, which looks at no credential and so has no tier")
		ok = false
	}
	if !ok {
		return nil
	}
	return ps
}

// label reads a name that is sent upstream in a header or metadata: not
// empty, no control characters.
func (p *parser) label(n *yaml.Node, path string) (string, bool) {
	s, ok := p.NonEmpty(n, path)
	if !ok {
		return "", false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			p.Add(n.Line, path, "must not hold control characters (it is sent in headers)")
			return "", false
		}
	}
	return s, true
}

func (p *parser) match(n *yaml.Node, path string, pol *Policy) bool {
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
				pol.Hosts = append(pol.Hosts, h)
				if suffix, wild := strings.CutPrefix(h, "*"); wild {
					pol.hostSuffixes = append(pol.hostSuffixes, suffix)
				} else {
					pol.exactHosts = append(pol.exactHosts, h)
				}
				return true
			})
			ok = ok && good
		case "path_prefix":
			s, good := p.Str(f.Val, fpath)
			switch {
			case !good:
				ok = false
			case s != "" && !strings.HasPrefix(s, "/"):
				p.Add(f.Val.Line, fpath, "must start with '/', found %q", s)
				ok = false
			case strings.ContainsAny(s, "?#"):
				p.Add(f.Val.Line, fpath, "must not hold '?' or '#': the path is matched without its query")
				ok = false
			default:
				pol.PathPrefix = s
			}
		case "methods":
			items, good := p.List(f.Val, fpath, "HTTP methods")
			ok = ok && good
			for i, item := range items {
				ipath := fmt.Sprintf("%s[%d]", fpath, i)
				m, good := p.NonEmpty(item, ipath)
				if good && !isToken(m) {
					p.Add(item.Line, ipath, "%q is not an HTTP method", m)
					good = false
				}
				if !good {
					ok = false
					continue
				}
				pol.Methods = append(pol.Methods, strings.ToUpper(m))
			}
			if good && len(items) == 0 {
				p.Add(f.Val.Line, fpath, "must list at least one method; leave out methods to match any method")
				ok = false
			}
		}
	}
	return ok
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
	h = strings.TrimSuffix(h, ".")
	rest, wild := strings.CutPrefix(h, "*.")
	if strings.ContainsAny(rest, "*") || (!wild && strings.HasPrefix(h, "*")) {
		return "", fmt.Sprintf("%q: a wildcard is allowed only as the whole first label, as in *.example.com", s)
	}
	if rest == "" || strings.ContainsAny(rest, "/ \t?#@") || strings.HasPrefix(rest, ".") || strings.Contains(rest, "..") {
		return "", fmt.Sprintf("%q is not a host name", s)
	}
	return h, ""
}

// rateLimit parses a policy's rate_limit; line is that of its domain.
func (p *parser) rateLimit(n *yaml.Node, path string) (*RateLimit, int, bool) {
	fields, ok := p.Mapping(n, path, "rate_limit", rateLimitFields)
	if !ok {
		return nil, 0, false
	}
	rl := &RateLimit{line: n.Line}
	line := 0
	for _, f := range fields {
		fpath := yamlconf.JoinField(path, f.Name)
		switch f.Name {
		case "domain":
			line = f.Val.Line
			rl.line = line
			s, good := p.NonEmpty(f.Val, fpath)
			rl.Domain = s
			ok = ok && good
		case "descriptors":
			lists, good := p.List(f.Val, fpath, "descriptors (each a list of {key, value})")
			ok = ok && good
			if good && len(lists) == 0 {
				p.Add(f.Val.Line, fpath, "must list at least one descriptor; leave out rate_limit for no limits")
				ok = false
			}
			for i, l := range lists {
				dpath := fmt.Sprintf("%s[%d]", fpath, i)
				entries, good := p.List(l, dpath, "entries {key, value}")
				if good && len(entries) == 0 {
					p.Add(l.Line, dpath, "a descriptor needs at least one entry {key, value}")
					good = false
				}
				var desc []Template
				for j, e := range entries {
					t, eok := p.entry(e, fmt.Sprintf("%s[%d]", dpath, j))
					good = good && eok
					desc = append(desc, t)
				}
				ok = ok && good
				rl.Descriptors = append(rl.Descriptors, desc)
			}
		}
	}
	if _, given := yamlconf.Lookup(fields, "domain"); !given {
		p.Add(n.Line, yamlconf.JoinField(path, "domain"), "missing; the domain of --config whose limits apply")
		line, ok = n.Line, false
	}
	if _, given := yamlconf.Lookup(fields, "descriptors"); !given {
		p.Add(n.Line, yamlconf.JoinField(path, "descriptors"), "missing; list the descriptors to check, each a list of {key, value}")
		ok = false
	}
	return rl, line, ok
}

func (p *parser) entry(n *yaml.Node, path string) (Template, bool) {
	fields, ok := p.Mapping(n, path, "a descriptor entry", entryFields)
	if !ok {
		return Template{}, false
	}
	var key string
	var val *yaml.Node
	for _, f := range fields {
		switch f.Name {
		case "key":
			var good bool
			key, good = p.NonEmpty(f.Val, yamlconf.JoinField(path, "key"))
			ok = ok && good
		case "value":
			val = f.Val
		}
	}
	if _, given := yamlconf.Lookup(fields, "key"); !given {
		p.Add(n.Line, yamlconf.JoinField(path, "key"), "missing; every entry needs a non-empty key")
		ok = false
	}
	if val == nil {
		p.Add(n.Line, yamlconf.JoinField(path, "value"), "missing; give a value template such as \"%%tenant%%\"")
		return Template{}, false
	}
	src, good := p.NonEmpty(val, yamlconf.JoinField(path, "value"))
	if !good {
		return Template{}, false
	}
	t, err := compileTemplate(key, src)
	if err != nil {
		p.Add(val.Line, yamlconf.JoinField(path, "value"), "%v", err)
		return Template{}, false
	}
	return t, ok
}

// keySpec is one parsed key, with where it is for duplicate messages.
type keySpec struct {
	key   *Key
	file  string
	line  int
	id    int // line of id
	sha   int // line of sha256
	field string
}

// parseKeys parses a keys file.
func parseKeys(name string, data []byte, problems *yamlconf.ProblemList) []keySpec {
	p := newParser(name, data, problems)
	root, _ := p.Root(data)
	if root == nil {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		p.Add(root.Line, "", "a keys file must be a mapping with keys: [...], found %s", yamlconf.Describe(root))
		return nil
	}
	fields, _ := p.Mapping(root, "", "a keys file", keysFileFields)
	f, ok := yamlconf.Lookup(fields, "keys")
	if !ok {
		return nil
	}
	items, _ := p.List(f.Val, "keys", "keys")
	var out []keySpec
	for i, item := range items {
		if ks, ok := p.key(item, fmt.Sprintf("keys[%d]", i)); ok {
			out = append(out, ks)
		}
	}
	return out
}

func (p *parser) key(n *yaml.Node, path string) (keySpec, bool) {
	ks := keySpec{key: &Key{}, file: p.File, line: n.Line, field: path}
	fields, ok := p.Mapping(n, path, "a key", keyFields)
	if !ok {
		return ks, false
	}
	k := ks.key
	for _, f := range fields {
		fpath := yamlconf.JoinField(path, f.Name)
		good := true
		switch f.Name {
		case "id":
			ks.id = f.Val.Line
			k.ID, good = p.label(f.Val, fpath)
		case "tenant":
			k.Tenant, good = p.label(f.Val, fpath)
		case "tier":
			k.Tier, good = p.label(f.Val, fpath)
		case "user":
			k.User, good = p.label(f.Val, fpath)
		case "sha256":
			ks.sha = f.Val.Line
			good = p.digest(f.Val, fpath, &k.digest)
		case "expires":
			// The text as written: YAML would read it as a timestamp in
			// more forms than RFC 3339.
			if f.Val.Kind != yaml.ScalarNode || yamlconf.IsNull(f.Val) {
				p.Add(f.Val.Line, fpath, "must be an RFC 3339 time such as 2027-06-30T00:00:00Z, found %s", yamlconf.Describe(f.Val))
				good = false
				break
			}
			t, err := time.Parse(time.RFC3339, f.Val.Value)
			if err != nil {
				found := yamlconf.Describe(f.Val)
				if len(f.Val.Value) > maxTimeLen {
					// Longer than any RFC 3339 time: perhaps a key
					// pasted in the wrong place; never show it.
					found = fmt.Sprintf("%d characters", len(f.Val.Value))
				}
				p.Add(f.Val.Line, fpath, "must be an RFC 3339 time such as 2027-06-30T00:00:00Z, found %s", found)
				good = false
				break
			}
			k.Expires = t
		}
		ok = ok && good
	}
	for _, need := range []struct{ name, why string }{
		{"id", "a public name for the key, logged and sent upstream"},
		{"sha256", "the hex SHA-256 of the key (sidecar keys new prints it)"},
		{"tenant", "the tenant the key belongs to"},
		{"tier", "the key's tier"},
	} {
		if _, given := yamlconf.Lookup(fields, need.name); !given {
			p.Add(n.Line, yamlconf.JoinField(path, need.name), "missing; %s", need.why)
			ok = false
		}
	}
	return ks, ok
}

// digest reads a hex SHA-256. Its value is never put in a message: a key
// pasted here by mistake must not reach a log.
func (p *parser) digest(n *yaml.Node, path string, out *[32]byte) bool {
	if n.Kind != yaml.ScalarNode || yamlconf.IsNull(n) {
		p.Add(n.Line, path, "must be 64 hex digits, the SHA-256 of the key")
		return false
	}
	s := n.Value
	if len(s) != 64 {
		p.Add(n.Line, path, "must be 64 hex digits, the SHA-256 of the key (sidecar keys new prints it); found %d characters", len(s))
		return false
	}
	if _, err := hex.Decode(out[:], []byte(s)); err != nil {
		p.Add(n.Line, path, "must be 64 hex digits, the SHA-256 of the key; found a character that is not a hex digit")
		return false
	}
	return true
}

// checkJWKS checks that a JWKS file holds a JSON object with a keys list;
// the keys themselves are the verifier's to judge.
func checkJWKS(data []byte) string {
	var set struct {
		Keys *[]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return fmt.Sprintf("not a JWKS (a JSON object with a keys list): %v", err)
	}
	if set.Keys == nil {
		return "not a JWKS: no keys list"
	}
	return ""
}
