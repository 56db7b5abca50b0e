// Package httpcache is the subset of HTTP caching (RFC 9111) and
// Cache-Status (RFC 9211) that the response cache follows: parsing
// Cache-Control, Vary, ETags, tags and Location; freshness; which statuses
// and headers may be stored; the canonical query. Pure functions over
// header values: no I/O, no state.
package httpcache

import "time"

// CacheControl is a parsed Cache-Control field (request or response).
type CacheControl struct {
	NoCache, NoStore, Private, Public, MustRevalidate bool
	MaxAge, SMaxAge                                   time.Duration
	HasMaxAge, HasSMaxAge                             bool
}

// ParseCacheControl parses the values of every Cache-Control field.
// Unknown directives are ignored; a malformed delta-seconds leaves the
// directive unset.
func ParseCacheControl(values ...string) CacheControl { panic("todo") }

// Lifetime is a response's freshness lifetime: s-maxage, else max-age,
// else Expires minus Date (Date defaulting to now), else def; capped by
// max. ok is false when the response gives no freshness and def is 0, or
// the lifetime is not positive.
func Lifetime(cc CacheControl, expires, date string, now time.Time, def, max time.Duration) (d time.Duration, ok bool) {
	panic("todo")
}

// ParseAge is a response's Age field as a duration (0 when absent or bad).
func ParseAge(v string) time.Duration { panic("todo") }

// StorableStatus says whether a response with this status may be stored:
// 200, 203, 204, 301, 404, 410.
func StorableStatus(code int) bool { panic("todo") }

// ParseVary returns the lower-case field names of the Vary values, sorted
// and without duplicates; star is true for "*".
func ParseVary(values ...string) (names []string, star bool) { panic("todo") }

// ETagMatches is RFC 9110's weak comparison of If-None-Match against a
// stored ETag ("*" matches any).
func ETagMatches(ifNoneMatch, etag string) bool { panic("todo") }

// HopByHop says whether a (lower-case) header is hop-by-hop: Connection,
// Keep-Alive, Transfer-Encoding, TE, Trailer, Upgrade, Proxy-Authenticate,
// Proxy-Authorization, or one the Connection field lists (connection).
func HopByHop(name string, connection []string) bool { panic("todo") }

// ParseTags is the tags of Cache-Tag values (comma separated) and
// Surrogate-Key values (space separated), without duplicates.
func ParseTags(cacheTag, surrogateKey []string) []string { panic("todo") }

// SplitTarget splits a request target (":path") into path and raw query.
func SplitTarget(target string) (path, query string) { panic("todo") }

// CanonicalQuery is the raw query without the ignored parameter names,
// its parameters sorted, so that equal queries in another order share a key.
func CanonicalQuery(query string, ignore []string) string { panic("todo") }

// SameHostPath is the path of a Location or Content-Location value when it
// names host (relative references always do); ok is false otherwise.
func SameHostPath(location, host string) (path string, ok bool) { panic("todo") }

// CacheStatus values (RFC 9211), for the cache named "floodgate".
func CacheStatusHit(ttl time.Duration, collapsed bool) string { panic("todo") }

// CacheStatusFwd is a forwarded response's Cache-Status: fwd is an RFC 9211
// forward reason (miss, method, request, bypass, vary-miss); stored adds
// "; stored".
func CacheStatusFwd(fwd string, stored bool) string { panic("todo") }
