// Package authsvc is the engine's door for Envoy's ext_authz
// (envoy.service.auth.v3.Authorization/Check): it turns a request's
// credential into a verified identity, picks the request's policy, and
// decides access and the policy's rate limits in one answer, through the
// same engine, limits and backend as ShouldRateLimit (see the contract's
// "Authorization" section).
//
// A Check walks data compiled at SetConfig: the policies' metric series,
// the failed_auth_limit's engine limits, the headers each answer removes.
// Denials travel in CheckResponse.status with the RPC answering OK; the
// RPC fails only on a malformed request (INVALID_ARGUMENT), before the
// first config (UNAVAILABLE) or when the backend fails (UNAVAILABLE,
// unless the engine fails open).
package authsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate/floodgate/pkg/authconfig"
	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/grpcstatus"
	"github.com/floodgate/floodgate/pkg/quota"
)

// DefaultAPIKeyHeader carries API keys when the config names no header.
const DefaultAPIKeyHeader = "x-api-key"

// FailedAuthName names failed_auth_limit in headers, problem bodies and
// the engine's metrics (as domain and rule).
const FailedAuthName = "failed-auth"

// clientIPKey is the entry key of the failed-auth counter's descriptor.
const clientIPKey = "client_ip"

// Options configure a Service. The zero value of each field is its default.
type Options struct {
	// Now is the clock API keys expire by (default time.Now).
	Now func() time.Time
	// Registerer receives floodgate_auth_decisions_total; nil leaves it
	// unregistered.
	Registerer prometheus.Registerer
	// Log receives a debug line per decision and the verifier's failures;
	// nil discards them. No key, token or Authorization value is ever
	// written to it.
	Log *slog.Logger
}

// Service answers Check with an engine. It is safe for concurrent use;
// SetConfig swaps the config while calls are in flight.
type Service struct {
	authv3.UnimplementedAuthorizationServer

	engine    *engine.Engine
	now       func() time.Time
	log       *slog.Logger
	decisions *prometheus.CounterVec

	mu      sync.Mutex // orders SetConfig
	state   atomic.Pointer[state]
	scratch sync.Pool
}

var _ authv3.AuthorizationServer = (*Service)(nil)

// New returns a Service deciding with eng. Until SetConfig, Check answers
// UNAVAILABLE.
func New(eng *engine.Engine, opts Options) (*Service, error) {
	if eng == nil {
		return nil, errors.New("authsvc: an engine is required")
	}
	s := &Service{engine: eng, now: opts.Now, log: opts.Log}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "floodgate", Subsystem: "auth", Name: "decisions_total",
		Help: "Check answers by policy (\"\" when none matched) and result.",
	}, []string{"policy", "result"})
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(s.decisions); err != nil {
			return nil, fmt.Errorf("authsvc: registering metrics: %w", err)
		}
	}
	s.scratch.New = func() any { return newScratch() }
	return s, nil
}

// Engine is the engine the service decides with.
func (s *Service) Engine() *engine.Engine { return s.engine }

// result is what a Check answered, as the decisions metric counts it.
type result uint8

const (
	resultOK result = iota
	resultMissing
	resultInvalid
	resultForbidden
	resultNoPolicy
	resultQuota
	resultFailedAuth
	resultUnavailable
	numResults
)

var resultNames = [numResults]string{
	"ok", "missing_credentials", "invalid_credentials", "forbidden", "no_policy",
	"quota_exceeded", "failed_auth_limit", "unavailable",
}

// state is a config compiled for deciding; immutable once published.
type state struct {
	cfg      *authconfig.Config
	verifier TokenVerifier
	keyHdr   string // the API-key header, lower case
	policies map[*authconfig.Policy]*policyState
	none     *policyState // the counters of requests no policy matches

	// failedCount counts a rejected credential (against
	// requests_per_unit); failedRead checks, counting nothing, against
	// requests_per_unit-1, so that it refuses once the count has reached
	// the limit. Both nil without failed_auth_limit.
	failedCount, failedRead *engine.Limit
	failedPolicy            string // the RateLimit-Policy member: q=requests_per_unit, w=unit seconds

	// removal[set][strip]: headers_to_remove for the identity headers set
	// (a bit per identityHeaders entry) and the credentials stripped.
	removal [1 << len(identityHeaders)][stripBoth + 1][]string
}

// policyState is one policy's compiled data.
type policyState struct {
	p      *authconfig.Policy
	name   string
	counts [numResults]prometheus.Counter
	// challenge is the 401's WWW-Authenticate; challengeToken the one after
	// a rejected token.
	challenge, challengeToken string
	// noneParts are auth: none's answer parts; keyParts an API key's, by
	// *authconfig.Key, built at its first answer (keys are few and fixed
	// per config, unlike a token's subjects).
	noneParts *identityParts
	keyParts  sync.Map
	// policyHdr is the last RateLimit-Policy header the policy answered.
	policyHdr atomic.Pointer[corev3.HeaderValueOption]
}

// Identity header names, in the order of their bits in a set mask.
var identityHeaders = [...]string{
	"x-floodgate-tenant", "x-floodgate-tier", "x-floodgate-user", "x-floodgate-key-id",
	"x-floodgate-subject", "x-floodgate-auth", "x-floodgate-policy",
}

// strip says which credential headers an allowed request loses upstream.
type strip uint8

const (
	stripNone strip = 0
	stripKey  strip = 1 // the API-key header
	stripAuth strip = 2 // authorization
	stripBoth strip = stripKey | stripAuth
)

// SetConfig compiles cfg, with verifier for its JWTs (nil when it has no
// issuers), and makes it decide new calls. Metric series of policies cfg
// no longer has are dropped.
func (s *Service) SetConfig(cfg *authconfig.Config, verifier TokenVerifier) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &state{
		cfg:      cfg,
		verifier: verifier,
		keyHdr:   strings.ToLower(cfg.APIKeys.Header),
		policies: make(map[*authconfig.Policy]*policyState, len(cfg.Policies)),
	}
	if st.keyHdr == "" {
		st.keyHdr = DefaultAPIKeyHeader
	}
	st.none = s.policyState(nil)
	names := map[string]bool{"": true}
	for _, p := range cfg.Policies {
		st.policies[p] = s.policyState(p)
		names[p.Name] = true
	}
	if l := cfg.FailedAuthLimit; l != nil {
		// A fixed window, whatever the config's default algorithm: the
		// contract counts failures "in the window" and refuses "in that
		// window", which a sliding estimate would outlast.
		count := quota.Limit{Algorithm: quota.FixedWindow, Requests: l.Requests, Unit: l.Unit}
		read := count
		if read.Requests > 0 {
			read.Requests--
		}
		st.failedCount = s.engine.NewLimit(FailedAuthName, FailedAuthName, count)
		st.failedRead = s.engine.NewLimit(FailedAuthName, FailedAuthName, read)
		st.failedPolicy = fmt.Sprintf("%q;q=%d;w=%d", FailedAuthName, l.Requests, int64(l.Unit/time.Second))
	}
	for set := range st.removal {
		for sp := range st.removal[set] {
			var names []string
			for i, h := range identityHeaders {
				if set&(1<<i) == 0 {
					names = append(names, h)
				}
			}
			if strip(sp)&stripKey != 0 {
				names = append(names, st.keyHdr)
			}
			if strip(sp)&stripAuth != 0 && st.keyHdr != "authorization" {
				names = append(names, "authorization")
			}
			st.removal[set][sp] = names
		}
	}
	if old := s.state.Swap(st); old != nil {
		for _, ps := range old.policies {
			if !names[ps.name] {
				for _, r := range resultNames {
					s.decisions.DeleteLabelValues(ps.name, r)
				}
			}
		}
	}
}

func (s *Service) policyState(p *authconfig.Policy) *policyState {
	ps := &policyState{p: p}
	if p != nil {
		ps.name = p.Name
		ps.noneParts = newIdentityParts(&authconfig.Identity{Auth: "none"}, p.Name)
		var challenges []string
		if p.Auth == authconfig.AuthJWT || p.Auth == authconfig.AuthAny {
			challenges = append(challenges, `Bearer realm="floodgate"`)
		}
		if p.Auth == authconfig.AuthAPIKey || p.Auth == authconfig.AuthAny {
			challenges = append(challenges, `ApiKey realm="floodgate"`)
		}
		ps.challenge = strings.Join(challenges, ", ")
		if len(challenges) > 0 && challenges[0] == `Bearer realm="floodgate"` {
			challenges[0] += `, error="invalid_token"`
		}
		ps.challengeToken = strings.Join(challenges, ", ")
	}
	for r := range ps.counts {
		ps.counts[r] = s.decisions.WithLabelValues(ps.name, resultNames[r])
	}
	return ps
}

// scratch is one call's working memory, pooled so a call allocates little.
type scratch struct {
	http    *authv3.AttributeContext_HttpRequest
	token   *TokenResult
	id      authconfig.Identity
	vars    authconfig.Vars
	req     engine.Request
	descs   []engine.Descriptor
	entries []engine.Entry
	ends    []int // per entry: the end of its value in buf
	buf     []byte
	failed  [1]engine.Entry
	out     engine.Outcome
	view    engine.Outcome // out without the failed-auth status
	headers engine.HeaderBuilder
}

func newScratch() *scratch {
	sc := &scratch{}
	// Bound once, so that rendering allocates no closures.
	sc.vars.Header = sc.header
	sc.vars.Claim = sc.claim
	sc.vars.Identity = &sc.id
	return sc
}

// header returns the request's header name (lower case): from
// header_map when Envoy sends raw headers, else from headers.
func (sc *scratch) header(name string) string {
	if hm := sc.http.GetHeaderMap(); hm != nil && len(hm.Headers) > 0 {
		return rawHeader(hm.Headers, name)
	}
	return sc.http.Headers[name]
}

// rawHeader finds name in Envoy's raw headers; repeated headers are
// joined with ", " as the headers map would have them.
func rawHeader(hs []*corev3.HeaderValue, name string) string {
	var v string
	found := false
	for _, h := range hs {
		if !strings.EqualFold(h.Key, name) {
			continue
		}
		hv := h.Value
		if len(h.RawValue) > 0 {
			hv = string(h.RawValue)
		}
		if found {
			v += ", " + hv
		} else {
			v, found = hv, true
		}
	}
	return v
}

func (sc *scratch) claim(name string) string {
	if sc.token == nil {
		return ""
	}
	return sc.token.Claim(name)
}

// Check decides one request: see the contract's "Authorization". The
// RPC fails only on a request without attributes.request.http
// (INVALID_ARGUMENT), before the first SetConfig or when the backend fails
// (UNAVAILABLE); denials are answers. An allowed answer shares immutable
// parts (identity headers, headers_to_remove, status) with others of the
// same config: it must not be modified.
func (s *Service) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	h := req.GetAttributes().GetRequest().GetHttp()
	if h == nil {
		s.engine.Metrics().Invalid()
		return nil, grpcstatus.FromError(grpcstatus.Invalidf("attributes.request.http: must be set"))
	}
	st := s.state.Load()
	if st == nil {
		return nil, grpcstatus.FromError(grpcstatus.ErrNoConfig)
	}
	sc := s.scratch.Get().(*scratch)
	defer s.put(sc)
	sc.http = h
	sc.id = authconfig.Identity{}
	sc.vars.Method = h.Method
	if sc.vars.Method == "" {
		sc.vars.Method = sc.header(":method")
	}
	sc.vars.Host = h.Host
	if sc.vars.Host == "" {
		if sc.vars.Host = sc.header(":authority"); sc.vars.Host == "" {
			sc.vars.Host = sc.header("host")
		}
	}
	path := h.Path
	if path == "" {
		path = sc.header(":path")
	}
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	sc.vars.Path = path
	sc.id.ClientIP = clientAddress(req, sc, st.cfg.TrustedHops)

	pol := st.cfg.Match(sc.vars.Host, sc.vars.Path, sc.vars.Method)
	ps := st.policies[pol]
	a := &answer{s: s, st: st, ps: ps, sc: sc}
	if ps == nil { // no policy (or one of another config: never)
		a.ps = st.none
		if over, err := a.failedAuthOver(ctx); err != nil || over {
			return a.failedOrError(err)
		}
		return a.deny(resultNoPolicy, "no policy matches this request", false), nil
	}
	if pol.Auth == authconfig.AuthNone {
		sc.id.Auth = "none"
		return a.admit(ctx)
	}
	// A client over failed_auth_limit is answered 429 whatever its
	// credential. Where the credential is judged in memory (an API key, a
	// token in the verifier's cache) it is judged first, so that one
	// backend call decides: a valid one has the failed-auth read decided
	// in the policy's batch (admit), over which nothing of the policy is
	// taken; an invalid key is counted alone, and that count refuses
	// (429) when the address is already over, as the read would have. A
	// missing credential, and a token that needs verifying, are read
	// against the limit alone first: a client over it gets no signature
	// checked nor JWKS fetched.
	read := false // the failed-auth read was decided alone, not over
	kind, cred := a.credential()
	switch kind {
	case credNone:
		if over, err := a.failedAuthOver(ctx); err != nil || over {
			return a.failedOrError(err)
		}
		return a.deny(resultMissing, "policy "+pol.Name+" needs "+needs(pol.Auth), false), nil
	case credKey:
		k, ok := st.cfg.APIKeys.Keys.Lookup(cred, s.now())
		if !ok {
			return a.invalid(ctx, "the API key is unknown or expired", false)
		}
		a.key = k
		sc.id.Tenant, sc.id.Tier, sc.id.User, sc.id.KeyID = k.Tenant, k.Tier, k.User, k.ID
		sc.id.Auth = "api_key"
	case credToken:
		if st.verifier == nil {
			return a.invalid(ctx, "no issuer is trusted for bearer tokens", true)
		}
		res, ok := st.verifier.Cached(cred)
		if !ok {
			if over, err := a.failedAuthOver(ctx); err != nil || over {
				return a.failedOrError(err)
			}
			read = true
			var err error
			if res, err = st.verifier.Verify(ctx, cred); err != nil {
				if cerr := ctx.Err(); cerr != nil {
					return nil, grpcstatus.FromError(cerr)
				}
				if !errors.Is(err, ErrInvalidToken) {
					// The verifier's own failure: denied, but not held
					// against the client.
					s.log.Warn("token verifier failed", "policy", pol.Name, "err", err.Error())
					return a.deny(resultInvalid, "the bearer token could not be verified", true), nil
				}
				return a.invalid(ctx, "the bearer token is invalid", true)
			}
		}
		sc.token = res
		sc.id.Tenant, sc.id.Tier, sc.id.User = res.Tenant, res.Tier, res.User
		sc.id.Subject, sc.id.Issuer = res.Subject, res.Issuer
		sc.id.Auth = "jwt"
	}
	if pol.Tiers != nil && !pol.Tiers[sc.id.Tier] {
		if !read {
			if over, err := a.failedAuthOver(ctx); err != nil || over {
				return a.failedOrError(err)
			}
		}
		return a.deny(resultForbidden, "tier "+quoteDetail(sc.id.Tier)+" may not use policy "+pol.Name, false), nil
	}
	return a.admit(ctx)
}

func (s *Service) put(sc *scratch) {
	sc.http, sc.token, sc.vars.Host, sc.vars.Path, sc.vars.Method = nil, nil, "", "", ""
	sc.id = authconfig.Identity{}
	clear(sc.entries[:cap(sc.entries)])
	sc.req.Descriptors = sc.req.Descriptors[:0]
	s.scratch.Put(sc)
}

func needs(a authconfig.Auth) string {
	switch a {
	case authconfig.AuthAPIKey:
		return "an API key"
	case authconfig.AuthJWT:
		return "a bearer token"
	}
	return "an API key or a bearer token"
}

// credKind is which credential a request is judged by.
type credKind uint8

const (
	credNone credKind = iota
	credKey
	credToken
)

// answer is one Check on its way to a response.
type answer struct {
	s     *Service
	st    *state
	ps    *policyState
	sc    *scratch
	strip strip
	key   *authconfig.Key // the API key the identity came from
}

// credential finds the credential the policy takes: an API key (its
// header, or `Authorization: ApiKey`), else a bearer token; with auth:
// any and both, the key. It notes what strip_credentials removes.
func (a *answer) credential() (credKind, string) {
	p := a.ps.p
	sc := a.sc
	takesKey := p.Auth == authconfig.AuthAPIKey || p.Auth == authconfig.AuthAny
	takesToken := p.Auth == authconfig.AuthJWT || p.Auth == authconfig.AuthAny
	var key, token string
	auth := sc.header("authorization")
	if takesKey {
		if key = strings.TrimSpace(sc.header(a.st.keyHdr)); key != "" {
			a.strip |= stripKey
		} else if v, ok := cutScheme(auth, "ApiKey"); ok {
			key = v
			a.strip |= stripAuth
		}
	}
	if takesToken {
		if v, ok := cutScheme(auth, "Bearer"); ok {
			token = v
			a.strip |= stripAuth
		}
	}
	if !p.StripCredentials {
		a.strip = stripNone
	}
	switch {
	case key != "":
		return credKey, key
	case token != "":
		return credToken, token
	}
	return credNone, ""
}

// cutScheme returns the credential of an Authorization value in scheme
// (case-insensitive), and whether there was a non-empty one.
func cutScheme(v, scheme string) (string, bool) {
	v = strings.TrimSpace(v)
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) || v[len(scheme)] != ' ' {
		return "", false
	}
	cred := strings.TrimSpace(v[len(scheme)+1:])
	return cred, cred != ""
}

// failedDescriptor is the failed-auth counter's descriptor for the
// client, with lim (count or read).
func (a *answer) failedDescriptor(lim *engine.Limit, hits uint64) engine.Descriptor {
	a.sc.failed[0] = engine.Entry{Key: clientIPKey, Value: failedAuthKey(a.sc.id.ClientIP)}
	return engine.Descriptor{Entries: a.sc.failed[:], Limit: lim, Hits: hits, HasHits: true}
}

// failedAuthOver reads, counting nothing, whether the client is over
// failed_auth_limit (false when there is none).
func (a *answer) failedAuthOver(ctx context.Context) (bool, error) {
	if a.st.failedRead == nil {
		return false, nil
	}
	sc := a.sc
	sc.req.Domain, sc.req.Hits = "", 0
	sc.req.Descriptors = append(sc.req.Descriptors[:0], a.failedDescriptor(a.st.failedRead, 0))
	if err := a.s.engine.Decide(ctx, &sc.req, &sc.out); err != nil {
		return false, err
	}
	return sc.out.Statuses[0].Code == engine.OverLimit, nil
}

// failedOrError answers a failedAuthOver that was over or failed.
func (a *answer) failedOrError(err error) (*authv3.CheckResponse, error) {
	if err != nil {
		a.ps.counts[resultUnavailable].Inc()
		return nil, grpcstatus.FromError(err)
	}
	return a.failedAuthLimited(&a.sc.out.Statuses[0]), nil
}

// invalid answers rejected credentials: counted against failed_auth_limit,
// 401 (or 429 when that count no longer fits: others got there first).
func (a *answer) invalid(ctx context.Context, detail string, token bool) (*authv3.CheckResponse, error) {
	if a.st.failedCount != nil {
		sc := a.sc
		sc.req.Domain, sc.req.Hits = "", 0
		sc.req.Descriptors = append(sc.req.Descriptors[:0], a.failedDescriptor(a.st.failedCount, 1))
		if err := a.s.engine.Decide(ctx, &sc.req, &sc.out); err != nil {
			a.ps.counts[resultUnavailable].Inc()
			return nil, grpcstatus.FromError(err)
		}
		if st := &sc.out.Statuses[0]; st.Code == engine.OverLimit {
			return a.failedAuthLimited(st), nil
		}
	}
	return a.deny(resultInvalid, detail, token), nil
}

// admit decides the policy's limits, with the failed-auth read, in one
// batch, and answers allowed or 429.
func (a *answer) admit(ctx context.Context) (*authv3.CheckResponse, error) {
	sc := a.sc
	p := a.ps.p
	sc.req.Descriptors, sc.req.Hits, sc.req.Domain = sc.req.Descriptors[:0], 0, ""
	n := 0
	if rl := p.RateLimit; rl != nil {
		sc.req.Domain = rl.Domain
		a.render(rl)
		n = len(sc.req.Descriptors)
	}
	if a.st.failedRead != nil {
		sc.req.Descriptors = append(sc.req.Descriptors, a.failedDescriptor(a.st.failedRead, 0))
	}
	sc.view = engine.Outcome{}
	if len(sc.req.Descriptors) > 0 {
		if err := a.s.engine.Decide(ctx, &sc.req, &sc.out); err != nil {
			a.ps.counts[resultUnavailable].Inc()
			return nil, grpcstatus.FromError(err)
		}
		if n < len(sc.out.Statuses) && sc.out.Statuses[n].Code == engine.OverLimit {
			return a.failedAuthLimited(&sc.out.Statuses[n]), nil
		}
		sc.view = engine.Outcome{Code: sc.out.Code, KnownDomain: sc.out.KnownDomain, Statuses: sc.out.Statuses[:n]}
	}
	hdrs := sc.headers.Build(&sc.view)
	if sc.view.Code == engine.OverLimit {
		return a.quotaExceeded(hdrs), nil
	}
	return a.allow(hdrs), nil
}

// render appends the policy's descriptors to sc.req, their values
// rendered from the templates; a descriptor with an entry that renders
// empty is left out. The values share one string.
func (a *answer) render(rl *authconfig.RateLimit) {
	sc := a.sc
	sc.buf, sc.entries, sc.ends = sc.buf[:0], sc.entries[:0], sc.ends[:0]
	for i := range rl.Descriptors {
		tpls := rl.Descriptors[i]
		bufMark, entryMark := len(sc.buf), len(sc.entries)
		ok := true
		for j := range tpls {
			var rendered bool
			if sc.buf, rendered = tpls[j].AppendValue(sc.buf, &sc.vars); !rendered {
				ok = false
				break
			}
			sc.entries = append(sc.entries, engine.Entry{Key: tpls[j].Key})
			sc.ends = append(sc.ends, len(sc.buf))
		}
		if !ok || len(tpls) == 0 {
			sc.buf, sc.entries, sc.ends = sc.buf[:bufMark], sc.entries[:entryMark], sc.ends[:entryMark]
			continue
		}
		sc.req.Descriptors = append(sc.req.Descriptors, engine.Descriptor{Entries: sc.entries[entryMark:len(sc.entries):len(sc.entries)]})
	}
	if len(sc.entries) == 0 {
		return
	}
	// One string for every value: one allocation, and nothing the engine
	// might keep aliases the reused buffer.
	values := string(sc.buf)
	start := 0
	for i := range sc.entries {
		sc.entries[i].Value = values[start:sc.ends[i]]
		start = sc.ends[i]
	}
	// The descriptors' entries were sliced before their values were set;
	// they share sc.entries' backing array, so they see the values, unless
	// an append above moved it: then point them at the final array.
	off := 0
	for i := range sc.req.Descriptors {
		d := &sc.req.Descriptors[i]
		n := len(d.Entries)
		d.Entries = sc.entries[off : off+n : off+n]
		off += n
	}
}

// clientAddress is the client per trusted_hops: the (hops+1)th address
// from the right of x-forwarded-for, its leftmost when it has fewer, and
// the socket peer with hops 0 (or without the header).
func clientAddress(req *authv3.CheckRequest, sc *scratch, hops int) string {
	if hops > 0 {
		if xff := sc.header("x-forwarded-for"); xff != "" {
			if ip := pickForwarded(xff, hops); ip != "" {
				return normalizeIP(ip)
			}
		}
	}
	return normalizeIP(req.GetAttributes().GetSource().GetAddress().GetSocketAddress().GetAddress())
}

func pickForwarded(xff string, hops int) string {
	end := len(xff)
	for i := 0; ; i++ {
		j := strings.LastIndexByte(xff[:end], ',')
		if i == hops || j < 0 {
			return strings.TrimSpace(xff[j+1 : end])
		}
		end = j
	}
}

// normalizeIP returns an address as the identity shows it: IPv4 as is,
// an IPv4-mapped IPv6 address as IPv4, a port dropped.
func normalizeIP(s string) string {
	addr, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		if perr != nil {
			return s
		}
		addr = ap.Addr()
	} else if addr.Is4() {
		return s
	}
	return addr.Unmap().String()
}

// failedAuthKey is what failed_auth_limit counts a client by: its IPv4
// address, or its IPv6 address's /64.
func failedAuthKey(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil || addr.Is4() {
		return ip
	}
	if p, err := addr.Prefix(64); err == nil {
		return p.String()
	}
	return ip
}

// violated names the limits o is over by, as their headers name them.
func violated(o *engine.Outcome) []string {
	var names []string
	for i := range o.Statuses {
		st := &o.Statuses[i]
		if st.Code == engine.OverLimit && st.Limit != nil {
			names = append(names, st.Limit.ID)
		}
	}
	return names
}
