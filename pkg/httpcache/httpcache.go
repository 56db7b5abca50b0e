// Package httpcache is the subset of HTTP caching (RFC 9111) and
// Cache-Status (RFC 9211) that the response cache follows: parsing
// Cache-Control, Vary, ETags, tags and Location; freshness; which statuses
// and headers may be stored; the canonical query. Pure functions over
// header values: no I/O, no state.
//
// Every function here runs on the request path: none uses regexp, and
// most allocate nothing (ParseCacheControl, Lifetime without Expires,
// ParseAge, ETagMatches, HopByHop, SplitTarget, SameHostPath, and
// CanonicalQuery for a query that is already canonical).
package httpcache

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CacheControl is a parsed Cache-Control field (request or response).
type CacheControl struct {
	NoCache, NoStore, Private, Public, MustRevalidate bool
	MaxAge, SMaxAge                                   time.Duration
	HasMaxAge, HasSMaxAge                             bool
}

// maxDelta is the largest delta-seconds kept: RFC 9111 §1.2.2 has a
// larger value taken as 2147483648 (2^31) seconds.
const maxDelta = 1 << 31

// ParseCacheControl parses the values of every Cache-Control field.
// Directive names are matched in any letter case, with optional white
// space around them; a value may be a token or a quoted string
// (max-age="60" is taken as max-age=60, as RFC 9111 §5.2 asks). Unknown
// directives are ignored; a malformed delta-seconds (empty, signed, with
// a fraction) leaves the directive unset, and a directive given twice
// takes its first well-formed value. no-cache and private with a list of
// field names (no-cache="set-cookie") count as plain no-cache and private:
// this cache does not store responses minus some fields.
func ParseCacheControl(values ...string) CacheControl {
	var cc CacheControl
	for _, v := range values {
		for len(v) > 0 {
			var name, val string
			var quoted bool
			name, val, quoted, v = nextDirective(v)
			switch {
			case name == "":
			case strings.EqualFold(name, "no-cache"):
				cc.NoCache = true
			case strings.EqualFold(name, "no-store"):
				cc.NoStore = true
			case strings.EqualFold(name, "private"):
				cc.Private = true
			case strings.EqualFold(name, "public"):
				cc.Public = true
			case strings.EqualFold(name, "must-revalidate"):
				cc.MustRevalidate = true
			case strings.EqualFold(name, "max-age"):
				if !cc.HasMaxAge {
					cc.MaxAge, cc.HasMaxAge = parseDelta(val, quoted)
				}
			case strings.EqualFold(name, "s-maxage"):
				if !cc.HasSMaxAge {
					cc.SMaxAge, cc.HasSMaxAge = parseDelta(val, quoted)
				}
			}
		}
	}
	return cc
}

// nextDirective reads one directive from the start of s: its name, its
// value (a quoted string without its quotes, escapes left in) and the rest
// of s after the comma that ends it. name is "" for an empty list member.
func nextDirective(s string) (name, val string, quoted bool, rest string) {
	i := skipOWS(s, 0)
	start := i
	for i < len(s) && s[i] != '=' && s[i] != ',' && s[i] != ' ' && s[i] != '\t' {
		i++
	}
	name = s[start:i]
	i = skipOWS(s, i)
	if i < len(s) && s[i] == '=' {
		i = skipOWS(s, i+1)
		if i < len(s) && s[i] == '"' {
			quoted = true
			i++
			vs := i
			for i < len(s) && s[i] != '"' {
				if s[i] == '\\' && i+1 < len(s) {
					i++ // a quoted-pair; a final '\\' stands for itself
				}
				i++
			}
			val = s[vs:i]
			if i < len(s) {
				i++ // closing quote
			}
		} else {
			vs := i
			for i < len(s) && s[i] != ',' && s[i] != ' ' && s[i] != '\t' {
				i++
			}
			val = s[vs:i]
		}
	}
	// Skip anything up to the next comma (garbage after a value).
	for i < len(s) && s[i] != ',' {
		i++
	}
	if i < len(s) {
		i++
	}
	return name, val, quoted, s[i:]
}

func skipOWS(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// parseDelta reads delta-seconds (1*DIGIT); in a quoted value, a
// quoted-pair (\6) stands for its character.
func parseDelta(v string, quoted bool) (time.Duration, bool) {
	var n int64
	digits := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		if quoted && c == '\\' && i+1 < len(v) {
			i++
			c = v[i]
		}
		if c < '0' || c > '9' {
			return 0, false
		}
		digits++
		if n < maxDelta {
			n = n*10 + int64(c-'0')
		}
	}
	if digits == 0 {
		return 0, false
	}
	return time.Duration(min(n, maxDelta)) * time.Second, true
}

// Lifetime is a response's freshness lifetime: s-maxage, else max-age,
// else Expires minus Date (Date defaulting to now when absent or invalid),
// else def; capped by max (max <= 0: no cap). An Expires that is not an
// HTTP date ("0", "-1") means already expired (RFC 9111 §5.3): ok is
// false, whatever def says. ok is false when the lifetime is not positive
// (max-age=0, an Expires in the past, no freshness and def 0). The
// lifetime counts from the response's age: what is left of it is d minus
// ParseAge of its Age field.
func Lifetime(cc CacheControl, expires, date string, now time.Time, def, max time.Duration) (d time.Duration, ok bool) {
	switch {
	case cc.HasSMaxAge:
		d = cc.SMaxAge
	case cc.HasMaxAge:
		d = cc.MaxAge
	case strings.TrimSpace(expires) != "":
		exp, err := http.ParseTime(strings.TrimSpace(expires))
		if err != nil {
			return 0, false
		}
		base := now
		if t, err := http.ParseTime(strings.TrimSpace(date)); err == nil {
			base = t
		}
		d = exp.Sub(base)
	default:
		d = def
	}
	if max > 0 && d > max {
		d = max
	}
	if d <= 0 {
		return 0, false
	}
	return d, true
}

// ParseAge is a response's Age field as a duration (0 when absent or bad).
// Values beyond 2^31 seconds are taken as 2^31 seconds (RFC 9111 §1.2.2).
func ParseAge(v string) time.Duration {
	v = strings.Trim(v, " \t")
	d, ok := parseDelta(v, false)
	if !ok {
		return 0
	}
	return d
}

// StorableStatus says whether a response with this status may be stored:
// 200, 203, 204, 301, 404, 410.
func StorableStatus(code int) bool {
	switch code {
	case 200, 203, 204, 301, 404, 410:
		return true
	}
	return false
}

// ParseVary returns the lower-case field names of the Vary values, sorted
// and without duplicates; star is true for "*" (the names are still
// returned). No Vary gives nil.
func ParseVary(values ...string) (names []string, star bool) {
	for _, v := range values {
		for len(v) > 0 {
			var item string
			item, v = nextItem(v, ',')
			switch {
			case item == "":
			case item == "*":
				star = true
			default:
				names = append(names, strings.ToLower(item))
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names), star
}

// nextItem returns the first member of a sep-separated list, trimmed of
// spaces and tabs, and the rest after the separator.
func nextItem(s string, sep byte) (item, rest string) {
	i := strings.IndexByte(s, sep)
	if i < 0 {
		item, rest = s, ""
	} else {
		item, rest = s[:i], s[i+1:]
	}
	return strings.Trim(item, " \t"), rest
}

// ETagMatches is RFC 9110's weak comparison of If-None-Match against a
// stored ETag: the list matches when one of its entity-tags has the same
// opaque-tag as etag, either of them weak (W/) or not. "*" matches any
// stored response, one without an ETag too (RFC 9110 §13.1.2: a current
// representation exists). An entity-tag is a quoted string; unquoted
// members, as some clients send, are compared as they are.
func ETagMatches(ifNoneMatch, etag string) bool {
	want := opaqueTag(strings.Trim(etag, " \t"))
	s := ifNoneMatch
	for {
		i := skipOWS(s, 0)
		for i < len(s) && s[i] == ',' {
			i = skipOWS(s, i+1)
		}
		s = s[i:]
		if s == "" {
			return false
		}
		var member string
		member, s = nextETag(s)
		if member == "*" {
			return true
		}
		if want != "" && opaqueTag(member) == want {
			return true
		}
	}
}

// nextETag reads one entity-tag (W/ optional, then a quoted string, which
// may hold commas) from the start of s, and returns it and the rest.
func nextETag(s string) (tag, rest string) {
	i := 0
	if len(s) >= 2 && (s[0] == 'W' || s[0] == 'w') && s[1] == '/' {
		i = 2
	}
	if i < len(s) && s[i] == '"' {
		if j := strings.IndexByte(s[i+1:], '"'); j >= 0 {
			end := i + 1 + j + 1
			return s[:end], s[end:]
		}
	}
	item, rest := nextItem(s, ',')
	return item, rest
}

// opaqueTag drops the weakness indicator of an entity-tag.
func opaqueTag(t string) string {
	if len(t) >= 2 && (t[0] == 'W' || t[0] == 'w') && t[1] == '/' {
		return t[2:]
	}
	return t
}

// HopByHop says whether a (lower-case) header is hop-by-hop: Connection,
// Keep-Alive, Transfer-Encoding, TE, Trailer, Upgrade, Proxy-Authenticate,
// Proxy-Authorization, or one the Connection field lists. connection is
// the Connection field's values as received: each may list several
// comma-separated names, in any letter case.
func HopByHop(name string, connection []string) bool {
	switch name {
	case "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
		"proxy-authenticate", "proxy-authorization":
		return true
	}
	for _, v := range connection {
		for len(v) > 0 {
			var item string
			item, v = nextItem(v, ',')
			if item != "" && strings.EqualFold(item, name) {
				return true
			}
		}
	}
	return false
}

// ParseTags is the tags of Cache-Tag values (comma separated) and
// Surrogate-Key values (space separated), trimmed, without duplicates, in
// the order first given (Cache-Tag first); nil when there are none. Tags
// are compared exactly, letter case included.
func ParseTags(cacheTag, surrogateKey []string) []string {
	var tags []string
	add := func(t string) {
		if t != "" && !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	for _, v := range cacheTag {
		for len(v) > 0 {
			var item string
			item, v = nextItem(v, ',')
			add(item)
		}
	}
	for _, v := range surrogateKey {
		for _, item := range strings.Fields(v) {
			add(item)
		}
	}
	return tags
}

// SplitTarget splits a request target (":path") into path and raw query
// (without the '?'); a fragment, which a target should not have, is
// dropped. "/a?b=1" gives "/a" and "b=1".
func SplitTarget(target string) (path, query string) {
	if i := strings.IndexByte(target, '#'); i >= 0 {
		target = target[:i]
	}
	path, query, _ = strings.Cut(target, "?")
	return path, query
}

// maxStackParams is how many query parameters CanonicalQuery sorts without
// allocating their list.
const maxStackParams = 16

// CanonicalQuery is the raw query without the ignored parameter names,
// its parameters sorted, so that equal queries in another order share a
// key. A parameter's name is compared with ignore after percent-decoding
// (and '+' as a space), so utm%5Fsource is utm_source; the parameters
// kept stay as written, and are sorted by their raw text (name=value, so
// repeated names keep a stable order by value). Empty parameters (a&&b)
// are dropped. A query that is already canonical is returned without
// allocating.
func CanonicalQuery(query string, ignore []string) string {
	// A first pass: is there anything to do? A trailing '&' is an empty
	// parameter that the loop below would not see.
	clean := !strings.HasSuffix(query, "&")
	prev := ""
	for rest, first := query, true; clean && len(rest) > 0; first = false {
		var p string
		p, rest = cutAmp(rest)
		if p == "" || ignored(p, ignore) || (!first && p < prev) {
			clean = false
		}
		prev = p
	}
	if clean {
		return query
	}
	var buf [maxStackParams]string
	params := buf[:0]
	size := 0
	for rest := query; len(rest) > 0; {
		var p string
		p, rest = cutAmp(rest)
		if p == "" || ignored(p, ignore) {
			continue
		}
		params = append(params, p)
		size += len(p) + 1
	}
	if len(params) == 0 {
		return ""
	}
	slices.Sort(params)
	var b strings.Builder
	b.Grow(size - 1)
	for i, p := range params {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p)
	}
	return b.String()
}

// cutAmp splits the first parameter off a query.
func cutAmp(s string) (param, rest string) {
	if i := strings.IndexByte(s, '&'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// ignored says whether a parameter's decoded name is one of ignore.
func ignored(param string, ignore []string) bool {
	if len(ignore) == 0 {
		return false
	}
	name := param
	if i := strings.IndexByte(param, '='); i >= 0 {
		name = param[:i]
	}
	for _, ig := range ignore {
		if decodedEqual(name, ig) {
			return true
		}
	}
	return false
}

// decodedEqual says whether raw, percent-decoded with '+' as a space,
// equals want; a '%' not followed by two hex digits stands for itself.
func decodedEqual(raw, want string) bool {
	j := 0
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '+':
			c = ' '
		case c == '%' && i+2 < len(raw) && isHex(raw[i+1]) && isHex(raw[i+2]):
			c = unhex(raw[i+1])<<4 | unhex(raw[i+2])
			i += 2
		}
		if j >= len(want) || want[j] != c {
			return false
		}
		j++
	}
	return j == len(want)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// SameHostPath is the path of a Location or Content-Location value when it
// names host; ok is false otherwise. host is the request's authority
// (":authority" or Host), with or without a port. An absolute URL (http
// or https) or a network-path reference (//host/x) names host when its
// host name equals host's in any letter case and, when both give a port,
// the ports are equal. An absolute-path reference (/x) always names host.
// A relative-path reference (x, ../x) is not resolved (this function has
// no base path): ok is false. The path is returned as written, without
// query or fragment; "" for an authority alone becomes "/".
func SameHostPath(location, host string) (path string, ok bool) {
	loc := strings.Trim(location, " \t")
	switch {
	case strings.HasPrefix(loc, "//"):
		loc = loc[2:]
	case strings.HasPrefix(loc, "/"):
		return pathOnly(loc), true
	default:
		scheme, rest, found := strings.Cut(loc, "://")
		if !found || !(strings.EqualFold(scheme, "http") || strings.EqualFold(scheme, "https")) {
			return "", false
		}
		loc = rest
	}
	end := strings.IndexAny(loc, "/?#")
	if end < 0 {
		end = len(loc)
	}
	authority, rest := loc[:end], loc[end:]
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		authority = authority[i+1:]
	}
	lh, lp := splitHostPort(authority)
	rh, rp := splitHostPort(host)
	if lh == "" || !strings.EqualFold(strings.TrimSuffix(lh, "."), strings.TrimSuffix(rh, ".")) {
		return "", false
	}
	if lp != "" && rp != "" && lp != rp {
		return "", false
	}
	p := pathOnly(rest)
	if p == "" {
		p = "/"
	}
	return p, true
}

// pathOnly cuts a query and a fragment off a reference.
func pathOnly(s string) string {
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		return s[:i]
	}
	return s
}

// splitHostPort splits "host:port" or "[v6]:port"; a bare IPv6 address
// (several colons) has no port.
func splitHostPort(s string) (host, port string) {
	if strings.HasPrefix(s, "[") {
		if i := strings.IndexByte(s, ']'); i > 0 {
			host, rest := s[1:i], s[i+1:]
			return host, strings.TrimPrefix(rest, ":")
		}
		return s, ""
	}
	if i := strings.IndexByte(s, ':'); i >= 0 && strings.LastIndexByte(s, ':') == i {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// CacheName is the cache's name in Cache-Status.
const CacheName = "floodgate"

// Forward reasons of RFC 9211 §2.2, for CacheStatusFwd.
const (
	FwdBypass   = "bypass"
	FwdMethod   = "method"
	FwdURIMiss  = "uri-miss"
	FwdVaryMiss = "vary-miss"
	FwdMiss     = "miss"
	FwdRequest  = "request"
	FwdStale    = "stale"
)

// CacheStatusHit is a hit's Cache-Status (RFC 9211):
// "floodgate; hit; ttl=N", N the whole seconds of freshness left (rounded
// down, never negative); a collapsed hit is "floodgate; hit; collapsed".
func CacheStatusHit(ttl time.Duration, collapsed bool) string {
	if collapsed {
		// As the contract spells it: a collapsed hit says so instead of
		// its ttl.
		return CacheName + "; hit; collapsed"
	}
	var buf [64]byte
	b := append(buf[:0], CacheName+"; hit; ttl="...)
	b = strconv.AppendInt(b, int64(max(ttl, 0)/time.Second), 10)
	return string(b)
}

// CacheStatusFwd is a forwarded response's Cache-Status: fwd is an RFC 9211
// forward reason (miss, method, request, bypass, vary-miss; the Fwd
// constants); stored adds "; stored". "floodgate; fwd=miss; stored".
func CacheStatusFwd(fwd string, stored bool) string {
	if stored {
		return CacheName + "; fwd=" + fwd + "; stored"
	}
	return CacheName + "; fwd=" + fwd
}
