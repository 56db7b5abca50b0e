package cacheconfig

import (
	"slices"
	"strings"
)

// Match is the first rule for a request to host and path, or nil. host
// should be lower case with its port removed (HostOnly does both); Match
// does it itself when it is not, allocating only for upper-case letters.
// path should be without its query; anything from a '?' is ignored
// anyway. Match walks precompiled data: each rule's hosts are sorted.
func (c *Config) Match(host, path string) *Rule {
	if c == nil {
		return nil
	}
	host = HostOnly(host)
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	for _, r := range c.Rules {
		if !strings.HasPrefix(path, r.PathPrefix) {
			continue
		}
		if len(r.Hosts) == 0 {
			return r
		}
		if _, found := slices.BinarySearch(r.Hosts, host); found {
			return r
		}
	}
	return nil
}

// HostOnly is a request's authority (":authority" or Host) as Match
// compares it: lower case, without a port or a trailing dot, an IPv6
// literal without brackets. "API.example.com:8443" gives
// "api.example.com", "[::1]:80" gives "::1". It allocates only when the
// host has upper-case letters.
func HostOnly(authority string) string {
	h := authority
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[1:i]
		}
	} else if i := strings.IndexByte(h, ':'); i >= 0 && strings.LastIndexByte(h, ':') == i {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if 'A' <= h[i] && h[i] <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}
