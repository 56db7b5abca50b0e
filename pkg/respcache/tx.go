package respcache

import (
	"context"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/floodgate/floodgate/pkg/cacheconfig"
	"github.com/floodgate/floodgate/pkg/cachestore"
	"github.com/floodgate/floodgate/pkg/httpcache"
)

// Request is an HTTP request as the door sees it.
type Request struct {
	Method    string
	Authority string // ":authority": host, maybe with a port
	Target    string // ":path": path and query
	// Header holds the request's other fields, names lower case.
	Header []Header
	// Identity is the ext_authz identity Envoy forwarded; nil without one.
	Identity *Identity
}

// Reply is a response served from the cache.
type Reply struct {
	Status int
	Header []Header
	Body   []byte
}

// BodyMode is how the door asks for a response body.
type BodyMode int

const (
	// BodyNone: the body is not wanted.
	BodyNone BodyMode = iota
	// BodyBuffered: the whole body, in one message (its Content-Length
	// fits MaxEntryBytes).
	BodyBuffered
	// BodyBufferedPartial: the body up to the proxy's buffer, for a body
	// of unknown length; one that arrives without its end is not stored.
	BodyBufferedPartial
)

// Answer is what the door says back on a response message: headers to set
// (each replacing the field) and, on the headers, whether the body is
// wanted.
type Answer struct {
	SetHeader []Header
	Body      BodyMode
}

// Forward reasons of Cache-Status (RFC 9211).
const (
	fwdMiss    = "miss"
	fwdMethod  = "method"
	fwdRequest = "request"
	fwdBypass  = "bypass"
)

// Tx is one request's exchange with the cache, from its headers to the end
// of its response. Its methods are called from one goroutine, in stream
// order; Close must be called once the exchange ends, however it ends.
type Tx struct {
	e    *Engine
	r    *rule
	host string
	path string

	write bool   // POST, PUT, PATCH or DELETE: may invalidate
	fwd   string // the forward reason of a bypassed request ("" = a lookup)
	get   bool   // a GET that was looked up: its response may be stored

	key      cachestore.Key
	vary     []Header // the request's fields a Vary may name
	personal bool
	flight   *flight // held while this request is the miss others wait for
	fk       flightKey

	pending *cachestore.Entry // a storable response awaiting its body
	pvary   []string
	// upstream is the response's own Cache-Status, which Body's answer
	// keeps before Floodgate's member.
	upstream string
}

// Begin starts a request's exchange. With no rule for it, tx is nil and
// nothing more of the exchange concerns the cache. With a reply, the
// request is answered from the cache (tx is nil). Otherwise the request
// goes on and tx follows its response.
func (e *Engine) Begin(ctx context.Context, req *Request) (tx *Tx, reply *Reply) {
	host := hostOf(req.Authority)
	path, query := httpcache.SplitTarget(req.Target)
	r := e.match(host, path)
	if r == nil {
		return nil, nil
	}
	t := &Tx{e: e, r: r, host: host, path: path}
	switch req.Method {
	case "GET", "HEAD":
	case "POST", "PUT", "PATCH", "DELETE":
		t.write = true
		return t.bypass(fwdMethod), nil
	default:
		return t.bypass(fwdMethod), nil
	}
	if cc := httpcache.ParseCacheControl(values(req.Header, "cache-control")...); cc.NoCache || cc.NoStore {
		return t.bypass(fwdRequest), nil
	}
	scope, ok := scopeParts(r.Scope, req.Identity)
	if !ok {
		return t.bypass(fwdBypass), nil
	}
	t.get = req.Method == "GET"
	t.personal = req.Identity != nil && req.Identity.Auth != "" && req.Identity.Auth != "none"
	t.vary = make([]Header, 0, len(req.Header))
	for _, h := range req.Header {
		switch h.Name {
		case "authorization", "cookie", "proxy-authorization":
			t.personal = true
		default:
			t.vary = append(t.vary, h)
		}
	}
	t.key = cachestore.Key{Host: host, Path: path, Primary: primary(r, query, req.Header, scope)}

	now := e.now()
	if ent := t.lookup(ctx, now); ent != nil {
		r.m.hit.Inc()
		return nil, replyFor(ent, req, now, false)
	}
	t.fk = flightKey{host: host, path: path, primary: t.key.Primary}
	f, leader := e.lead(t.fk, t.get)
	if leader {
		t.flight = f
	} else if f != nil && e.await(ctx, f) {
		now = e.now()
		if ent := t.lookup(ctx, now); ent != nil {
			r.m.collapsed.Inc()
			return nil, replyFor(ent, req, now, true)
		}
	}
	r.m.miss.Inc()
	return t, nil
}

// bypass is a request on a rule that the cache neither serves nor stores.
func (t *Tx) bypass(fwd string) *Tx {
	t.fwd = fwd
	t.r.m.bypass.Inc()
	return t
}

// lookup is the fresh entry for the request, or nil (a storage error
// counts and reads as none).
func (t *Tx) lookup(ctx context.Context, now time.Time) *cachestore.Entry {
	if !t.e.guard("get") {
		return nil
	}
	ctx, cancel := storeCtx(ctx)
	defer cancel()
	ent, err := t.e.store.Get(ctx, t.key, t.vary, now)
	t.e.heard(err)
	if err != nil {
		t.e.storageError("get", err)
		return nil
	}
	if ent == nil || !ent.Expires.After(now) {
		return nil
	}
	return ent
}

// Response takes the response's status and headers (names lower case,
// pseudo-headers left out); end is true when the response has no body.
func (t *Tx) Response(ctx context.Context, status int, header []Header, end bool) Answer {
	if t.write {
		if status >= 200 && status < 400 {
			t.invalidate(ctx, header)
		}
		return t.status(header, t.fwd, false)
	}
	if t.fwd != "" {
		return t.status(header, t.fwd, false)
	}
	if !t.get {
		return t.status(header, fwdMiss, false)
	}
	ent, vary, mode := t.storable(status, header)
	if ent == nil {
		t.land()
		return t.status(header, fwdMiss, false)
	}
	if end {
		stored := t.put(ctx, ent, vary)
		return t.status(header, fwdMiss, stored)
	}
	t.pending, t.pvary = ent, vary
	t.upstream = strings.Join(values(header, "cache-status"), ", ")
	a := t.status(header, fwdMiss, false)
	a.Body = mode
	return a
}

// Body takes the response body asked for; end is true when it is whole.
// The header it sets, if any, replaces what Response set.
func (t *Tx) Body(ctx context.Context, body []byte, end bool) Answer {
	ent := t.pending
	if ent == nil {
		return Answer{}
	}
	t.pending = nil
	stored := false
	if end && len(body) <= t.e.maxEntryBytes {
		ent.Body = body
		stored = t.put(ctx, ent, t.pvary)
	}
	t.land()
	return Answer{SetHeader: []Header{{Name: "cache-status", Value: joinStatus(t.upstream, httpcache.CacheStatusFwd(fwdMiss, stored))}}}
}

// joinStatus puts Floodgate's member after the upstream's (RFC 9211: the
// cache nearest the client comes last).
func joinStatus(upstream, ours string) string {
	if upstream == "" {
		return ours
	}
	return upstream + ", " + ours
}

// Close ends the exchange: a request others wait behind releases them.
func (t *Tx) Close() {
	if t != nil {
		t.land()
	}
}

// status is an answer that sets Cache-Status after the field the response
// already has (RFC 9211: the cache nearest the client comes last).
func (t *Tx) status(header []Header, fwd string, stored bool) Answer {
	v := joinStatus(strings.Join(values(header, "cache-status"), ", "), httpcache.CacheStatusFwd(fwd, stored))
	return Answer{SetHeader: []Header{{Name: "cache-status", Value: v}}}
}

// storable is the entry a GET response would be stored as, with its Vary
// names and how to ask for its body; nil when it may not be stored.
func (t *Tx) storable(status int, header []Header) (*cachestore.Entry, []string, BodyMode) {
	if !httpcache.StorableStatus(status) {
		return nil, nil, BodyNone
	}
	cc := httpcache.ParseCacheControl(values(header, "cache-control")...)
	switch {
	case cc.NoStore, cc.NoCache:
		return nil, nil, BodyNone
	case cc.Private && t.r.Scope != cacheconfig.User:
		return nil, nil, BodyNone
	case t.personal && t.r.Scope == cacheconfig.Public && !cc.Public && !cc.HasSMaxAge && !cc.MustRevalidate:
		return nil, nil, BodyNone
	}
	if has(header, "set-cookie") {
		return nil, nil, BodyNone
	}
	vary, star := httpcache.ParseVary(values(header, "vary")...)
	if star {
		return nil, nil, BodyNone
	}
	for _, v := range vary {
		switch v {
		case "authorization", "cookie", "proxy-authorization":
			// The key leaves these out; a response that varies on them is
			// personal.
			return nil, nil, BodyNone
		}
	}
	mode := BodyBufferedPartial
	if cl := first(header, "content-length"); cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < 0 || n > int64(t.e.maxEntryBytes) {
			return nil, nil, BodyNone
		}
		mode = BodyBuffered
	}
	now := t.e.now()
	life, ok := httpcache.Lifetime(cc, first(header, "expires"), first(header, "date"), now, t.r.TTL, t.r.MaxTTL)
	if !ok {
		return nil, nil, BodyNone
	}
	age := httpcache.ParseAge(first(header, "age"))
	expires := now.Add(life - age)
	if !expires.After(now) {
		return nil, nil, BodyNone
	}
	connection := values(header, "connection")
	kept := make([]Header, 0, len(header))
	for _, h := range header {
		if h.Name == "age" || h.Name == "cache-status" || httpcache.HopByHop(h.Name, connection) {
			continue
		}
		kept = append(kept, h)
	}
	return &cachestore.Entry{
		Status:     status,
		Header:     kept,
		Stored:     now,
		Expires:    expires,
		InitialAge: age,
		ETag:       first(header, "etag"),
		Tags:       httpcache.ParseTags(values(header, "cache-tag"), values(header, "surrogate-key")),
	}, vary, mode
}

// put stores ent and releases the requests waiting for it.
func (t *Tx) put(ctx context.Context, ent *cachestore.Entry, vary []string) bool {
	if !t.e.guard("put") {
		t.land()
		return false
	}
	ctx, cancel := storeCtx(ctx)
	defer cancel()
	err := t.e.store.Put(ctx, t.key, vary, t.vary, ent)
	t.e.heard(err)
	t.land()
	if err != nil {
		t.e.storageError("put", err)
		return false
	}
	t.r.m.stores.Inc()
	return true
}

// invalidate removes what a successful write changed: its path, the
// same-host Location and Content-Location paths, and the rule's
// invalidates prefixes.
func (t *Tx) invalidate(ctx context.Context, header []Header) {
	sel := cachestore.Selector{Host: t.host, Paths: []string{t.path}, Prefixes: t.r.Invalidates}
	for _, name := range [...]string{"location", "content-location"} {
		if p, ok := httpcache.SameHostPath(first(header, name), t.host); ok && p != t.path {
			sel.Paths = append(sel.Paths, p)
		}
	}
	// An invalidation is tried even while the breaker is open: a write
	// must not leave a stale entry behind when the store is back.
	ctx, cancel := storeCtx(ctx)
	defer cancel()
	n, err := t.e.store.Invalidate(ctx, sel)
	t.e.heard(err)
	if err != nil {
		t.e.storageError("invalidate", err)
	}
	if n > 0 {
		t.r.m.invalidations.Add(float64(n))
	}
}

// replyFor is the answer an entry gives req: 304 when its If-None-Match
// matches the entry's ETag, no body for HEAD.
func replyFor(ent *cachestore.Entry, req *Request, now time.Time, collapsed bool) *Reply {
	age := ent.InitialAge + now.Sub(ent.Stored)
	if age < 0 {
		age = 0
	}
	extra := [...]Header{
		{Name: "age", Value: strconv.FormatInt(int64(age/time.Second), 10)},
		{Name: "cache-status", Value: httpcache.CacheStatusHit(ent.Expires.Sub(now), collapsed)},
	}
	if inm := values(req.Header, "if-none-match"); ent.ETag != "" && len(inm) > 0 && httpcache.ETagMatches(strings.Join(inm, ", "), ent.ETag) {
		h := make([]Header, 0, 8)
		for _, f := range ent.Header {
			switch f.Name {
			case "cache-control", "content-location", "date", "etag", "expires", "vary":
				h = append(h, f)
			}
		}
		return &Reply{Status: 304, Header: append(h, extra[:]...)}
	}
	h := make([]Header, 0, len(ent.Header)+len(extra))
	h = append(append(h, ent.Header...), extra[:]...)
	rp := &Reply{Status: ent.Status, Header: h}
	if req.Method != "HEAD" {
		rp.Body = ent.Body
	}
	return rp
}

// hostOf is an authority's host, lower case, without its port.
func hostOf(authority string) string {
	h := authority
	if host, _, err := net.SplitHostPort(authority); err == nil {
		h = host
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	return strings.ToLower(h)
}

// values are the fields named name (lower case).
func values(header []Header, name string) []string {
	var out []string
	for _, h := range header {
		if h.Name == name {
			out = append(out, h.Value)
		}
	}
	return out
}

func first(header []Header, name string) string {
	for _, h := range header {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

func has(header []Header, name string) bool {
	for _, h := range header {
		if h.Name == name {
			return true
		}
	}
	return false
}
