// Package cachestore is where the response cache keeps its entries: the
// Store interface the cache engine (pkg/respcache) speaks, the Entry it
// stores, and the memory store (least recently used, bounded by bytes).
// The Redis store is pkg/rediscache. A store knows nothing of HTTP
// semantics: what may be stored and for how long is decided before Put.
package cachestore

import (
	"context"
	"strconv"
	"time"
)

// Header is one header field. Names are lower case; a field that appears
// twice is two Headers, in order.
type Header struct {
	Name  string
	Value string
}

// Entry is one stored response.
type Entry struct {
	Status int
	// Header holds the response's headers as they are replayed (hop-by-hop
	// fields, Age and Cache-Status already left out).
	Header []Header
	Body   []byte
	// Stored is when the response was received; Expires when it stops
	// being fresh. InitialAge is the response's own Age when received.
	Stored     time.Time
	Expires    time.Time
	InitialAge time.Duration
	// ETag is the response's ETag ("" without one); Tags its Cache-Tag /
	// Surrogate-Key values, for PurgeTags.
	ETag string
	Tags []string
}

// Size is the bytes an entry is accounted as (body, headers and a fixed
// overhead), for --cache-max-bytes and floodgate_cache_bytes.
func (e *Entry) Size() int {
	n := entryOverhead + len(e.Body) + len(e.ETag)
	for _, h := range e.Header {
		n += len(h.Name) + len(h.Value) + headerOverhead
	}
	for _, t := range e.Tags {
		n += len(t) + headerOverhead
	}
	return n
}

const (
	entryOverhead  = 128
	headerOverhead = 16
)

// Key addresses the responses of one request shape. Host and Path (no
// query) are the entry's path group: invalidating a path removes every
// entry with them, whatever its Primary. Primary is a digest of the rest
// of the key but Vary: rule, scope, sorted query, key headers, identity.
type Key struct {
	Host    string
	Path    string
	Primary string
}

// Selector says which entries Invalidate removes: those of the exact
// Paths and those under the Prefixes, on Host ("" = every host), and those
// tagged with any of Tags (every host).
type Selector struct {
	Host     string
	Paths    []string
	Prefixes []string
	Tags     []string
}

// Stats is what a store holds now.
type Stats struct {
	Entries int64
	Bytes   int64
}

// Store keeps entries. Under one Key it keeps the Vary header names of the
// last response stored there and one entry per combination of the
// request's values of those headers (a variant, see VariantID).
//
// Get returns the fresh entry for the request's variant (req: the request's
// headers, names lower case), or nil without an error when there is none;
// an entry past Expires is none. Put stores e under k for the variant that
// vary and req give, replacing the Key's vary names (and dropping its
// variants when they change); the store may drop it at e.Expires. Errors
// are the backend's: callers pass the request through uncached.
type Store interface {
	Get(ctx context.Context, k Key, req []Header, now time.Time) (*Entry, error)
	Put(ctx context.Context, k Key, vary []string, req []Header, e *Entry) error
	// Invalidate removes the entries sel selects and says how many.
	Invalidate(ctx context.Context, sel Selector) (int, error)
	Stats(ctx context.Context) (Stats, error)
}

// Remote is a Store in another process (pkg/rediscache), whose calls can
// fail for want of it. The engine (pkg/respcache) guards such a store with
// a breaker, so that a store that stalls stops costing each request its
// timeout once it has been seen to.
type Remote interface {
	Store
	// Outage reports whether err, from one of the store's calls, means
	// the store cannot serve now (rather than an answer about one call,
	// or a caller that gave up).
	Outage(err error) bool
}

// VariantID is the variant of a request under the Vary names: each name
// and the request's value of it (fields of one name joined with ", "), so
// that two requests share a variant exactly when they agree on every
// name. Both stores use it; rediscache's Lua script computes the same.
//
// The encoding is, for each name in order, the name (ASCII lower case) as
// LEN:NAME, then "!" when the request has no field of that name, else
// "=" and the joined value as LEN:VALUE (LEN in decimal). Lengths make it
// unambiguous whatever bytes the values hold; an absent field and an empty
// one are different variants. No names is the variant "".
func VariantID(vary []string, req []Header) string {
	if len(vary) == 0 {
		return ""
	}
	return string(AppendVariantID(nil, vary, req))
}

// AppendVariantID appends VariantID(vary, req) to dst, so that a caller
// with a buffer of its own looks a variant up without allocating.
func AppendVariantID(dst []byte, vary []string, req []Header) []byte {
	for _, name := range vary {
		dst = strconv.AppendInt(dst, int64(len(name)), 10)
		dst = append(dst, ':')
		for i := 0; i < len(name); i++ {
			dst = append(dst, lower(name[i]))
		}
		n, fields := 0, 0
		for i := range req {
			if asciiEqualFold(req[i].Name, name) {
				if fields > 0 {
					n += len(", ")
				}
				n += len(req[i].Value)
				fields++
			}
		}
		if fields == 0 {
			dst = append(dst, '!')
			continue
		}
		dst = append(dst, '=')
		dst = strconv.AppendInt(dst, int64(n), 10)
		dst = append(dst, ':')
		fields = 0
		for i := range req {
			if asciiEqualFold(req[i].Name, name) {
				if fields > 0 {
					dst = append(dst, ", "...)
				}
				dst = append(dst, req[i].Value...)
				fields++
			}
		}
	}
	return dst
}

// lower is ASCII lower case: Lua's string.lower in the C locale, so that
// Go and the Redis script fold names the same way.
func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// asciiEqualFold compares two names under ASCII case folding only
// (strings.EqualFold also folds Unicode, which the Lua script does not).
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}
