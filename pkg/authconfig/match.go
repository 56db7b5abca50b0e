package authconfig

import "strings"

// Match returns the first policy whose match holds for the request, or nil
// when none does (the door answers 403 no-policy). host may carry a port
// and any letter case; path should be without its query, but anything from
// a '?' on is ignored anyway; method is compared in any letter case. Match
// walks precompiled data and does not allocate.
func (c *Config) Match(host, path, method string) *Policy {
	if c == nil {
		return nil
	}
	host = hostOnly(host)
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	for _, p := range c.Policies {
		if p.matches(host, path, method) {
			return p
		}
	}
	return nil
}

// matches says whether every field of the policy's match holds; host is
// without its port.
func (p *Policy) matches(host, path, method string) bool {
	if !strings.HasPrefix(path, p.PathPrefix) {
		return false
	}
	if len(p.Methods) > 0 {
		found := false
		for _, m := range p.Methods {
			if strings.EqualFold(m, method) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if len(p.Hosts) == 0 {
		return true
	}
	for _, h := range p.exactHosts {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	for _, s := range p.hostSuffixes {
		// At least one label before the suffix: never the apex.
		if len(host) > len(s) && strings.EqualFold(host[len(host)-len(s):], s) && host[0] != '.' {
			return true
		}
	}
	return false
}

// hostOnly drops a port and a trailing dot from a host (and the brackets
// of an IPv6 literal): "API.example.com:8443" gives "API.example.com",
// "[::1]:80" gives "::1". A bare IPv6 address (more than one ':') is kept.
func hostOnly(host string) string {
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i > 0 {
			return host[1:i]
		}
		return host
	}
	if i := strings.IndexByte(host, ':'); i >= 0 && strings.LastIndexByte(host, ':') == i {
		host = host[:i]
	}
	return strings.TrimSuffix(host, ".")
}
