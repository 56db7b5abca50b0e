package jwtauth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Options and of IssuerConfig.Refresh.
const (
	DefaultFetchTimeout  = 5 * time.Second
	DefaultMaxJWKSBytes  = 1 << 20
	DefaultCacheSize     = 10_000
	DefaultMaxTokenBytes = 16 << 10
	DefaultRefresh       = 5 * time.Minute
)

// MinFetchInterval is the least time between two fetches of one issuer's
// JWKS URL, counting every fetch: at start, on the interval, and those an
// unknown kid asks for. A flood of tokens with made-up kids thus costs the
// issuer at most one request per MinFetchInterval.
const MinFetchInterval = 10 * time.Second

// Options configure a Verifier. The zero value of every field is its
// documented default; a negative number is an error that names the field.
type Options struct {
	// HTTPClient fetches JWKS URLs; default a client with a FetchTimeout
	// timeout. Its redirects are followed only to URLs that a jwks_url may
	// name itself (https, or http to loopback).
	HTTPClient *http.Client
	// FetchTimeout bounds each JWKS fetch, whatever HTTPClient's own
	// timeout; default DefaultFetchTimeout (5s).
	FetchTimeout time.Duration
	// MaxJWKSBytes bounds a JWKS body or file; a larger one is a failed
	// load. Default DefaultMaxJWKSBytes (1 MiB).
	MaxJWKSBytes int64
	// MaxTokenBytes bounds a token; a larger one is invalid without being
	// parsed. Default DefaultMaxTokenBytes (16 KiB).
	MaxTokenBytes int
	// CacheSize bounds the verified-token cache (entries); default
	// DefaultCacheSize.
	CacheSize int
	// Now is the clock for exp, nbf, the cache and MinFetchInterval;
	// default time.Now.
	Now func() time.Time
	// Metrics are the collectors to count into (see NewMetrics); default
	// unregistered ones.
	Metrics *Metrics
	// Log receives key-set loads and failures (warn), and at debug level
	// the reason of each rejected token; default slog.Default().
	Log *slog.Logger
}

// Result is a verified token's identity. A Result may be shared by every
// caller that verified the same token while it was cached: treat it as
// read-only.
type Result struct {
	// Issuer is the token's iss, the configured issuer.
	Issuer string
	// Subject is the token's sub ("" when absent).
	Subject string
	// Tenant, Tier and User come from the claims that the issuer's Claims
	// names ("" for a field whose claim name is "").
	Tenant, Tier, User string
	// Expiry is the token's exp.
	Expiry time.Time
	// Claims are all the token's claims as encoding/json decodes them,
	// numbers as json.Number.
	Claims map[string]any
}

// Claim returns a claim as a string, for %claim:NAME%: a string as is, a
// number as written in the token, a boolean as true or false, and ""
// for anything else or an absent claim.
func (r *Result) Claim(name string) string {
	switch c := r.Claims[name].(type) {
	case string:
		return c
	case json.Number:
		return c.String()
	case bool:
		return strconv.FormatBool(c)
	}
	return ""
}

// Verifier verifies tokens of a fixed list of issuers. It is safe for
// concurrent use. Close stops its background JWKS refreshes.
type Verifier struct {
	issuers      map[string]*issuer
	client       *http.Client
	fetchTimeout time.Duration
	maxJWKS      int64
	maxToken     int
	now          func() time.Time
	metrics      *Metrics
	log          *slog.Logger
	cache        *tokenCache

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex // guards closing and wg.Add against Close
	wg     sync.WaitGroup
	closed bool

	// onSignatureCheck, when set (tests), is called before each signature
	// verification.
	onSignatureCheck func()
}

// issuer is one compiled IssuerConfig.
type issuer struct {
	cfg     IssuerConfig
	allowed map[string]bool
	tenants map[string]bool
	src     *keySource
}

// keySource is where an issuer's keys come from, and its last good set.
type keySource struct {
	issuer  string
	file    string
	url     string
	logURL  string // url without any password
	refresh time.Duration

	keys atomic.Pointer[keySet]

	loadsOK, loadsErr           prometheus.Counter
	refreshInterval, refreshKID prometheus.Counter

	mu        sync.Mutex
	fetched   bool      // a fetch has started (lastFetch is set)
	lastFetch time.Time // by the Verifier's clock
	inflight  chan struct{}
	body      []byte // the body keys was parsed from
	failures  int    // fetches failed in a row
}

// New builds a Verifier for issuers. It loads every jwks_file now (a
// failure is an error naming the file) and fetches every jwks_url once,
// concurrently, waiting at most FetchTimeout: a failed first fetch is
// logged, not an error, and that issuer's tokens are invalid until a
// fetch succeeds (an unknown kid asks for one, at most once per
// MinFetchInterval). The configs' File and Line prefix every error.
func New(issuers []IssuerConfig, opts Options) (*Verifier, error) {
	return NewFrom(nil, issuers, opts)
}

// NewFrom is New for a reloaded auth config: an issuer whose jwks_url prev
// also fetched starts from prev's last good key set and fetch times
// instead of fetching at once, so a reload during a JWKS outage keeps the
// keys that work and MinFetchInterval holds across reloads. prev may be
// nil, and is neither used after NewFrom returns nor closed by it.
func NewFrom(prev *Verifier, issuers []IssuerConfig, opts Options) (*Verifier, error) {
	v, err := newVerifier(opts)
	if err != nil {
		return nil, err
	}
	var carried map[string]*keySource
	if prev != nil {
		carried = make(map[string]*keySource)
		for _, is := range prev.issuers {
			if is.src.url != "" && carried[is.src.url] == nil {
				carried[is.src.url] = is.src
			}
		}
	}
	var toFetch []*keySource
	for i := range issuers {
		is, err := v.compile(i, issuers[i])
		if err != nil {
			return nil, err
		}
		src := is.src
		switch {
		case src.file != "":
			if err := v.loadFile(src); err != nil {
				return nil, fmt.Errorf("%s: jwks_file %s: %w", where(i, issuers[i]), src.file, err)
			}
		case carried[src.url] != nil:
			old := carried[src.url]
			old.mu.Lock()
			src.keys.Store(old.keys.Load())
			src.body, src.fetched, src.lastFetch, src.failures = old.body, old.fetched, old.lastFetch, old.failures
			old.mu.Unlock()
			if !src.fetched {
				toFetch = append(toFetch, src)
			}
		default:
			toFetch = append(toFetch, src)
		}
	}
	waits := make([]<-chan struct{}, 0, len(toFetch))
	for _, src := range toFetch {
		if ch := v.startFetch(src, ""); ch != nil {
			waits = append(waits, ch)
		}
	}
	for _, ch := range waits {
		<-ch
	}
	for _, is := range v.issuers {
		if is.src.url != "" {
			v.wg.Add(1)
			go v.refreshLoop(is.src)
		}
	}
	return v, nil
}

func newVerifier(opts Options) (*Verifier, error) {
	switch {
	case opts.FetchTimeout < 0:
		return nil, errors.New("jwtauth: Options.FetchTimeout is negative")
	case opts.MaxJWKSBytes < 0:
		return nil, errors.New("jwtauth: Options.MaxJWKSBytes is negative")
	case opts.MaxTokenBytes < 0:
		return nil, errors.New("jwtauth: Options.MaxTokenBytes is negative")
	case opts.CacheSize < 0:
		return nil, errors.New("jwtauth: Options.CacheSize is negative")
	}
	v := &Verifier{
		issuers:      make(map[string]*issuer),
		fetchTimeout: cmpOr(opts.FetchTimeout, DefaultFetchTimeout),
		maxJWKS:      cmpOr(opts.MaxJWKSBytes, DefaultMaxJWKSBytes),
		maxToken:     cmpOr(opts.MaxTokenBytes, DefaultMaxTokenBytes),
		now:          opts.Now,
		metrics:      opts.Metrics,
		log:          opts.Log,
		cache:        newTokenCache(cmpOr(opts.CacheSize, DefaultCacheSize)),
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.metrics == nil {
		v.metrics = NewMetrics(nil)
	}
	if v.log == nil {
		v.log = slog.Default()
	}
	client := &http.Client{Timeout: v.fetchTimeout}
	if opts.HTTPClient != nil {
		c := *opts.HTTPClient
		client = &c
	}
	next := client.CheckRedirect
	client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := checkJWKSURL(req.URL); err != nil {
			return fmt.Errorf("redirect refused: %w", err)
		}
		if len(via) >= 5 {
			return errors.New("stopped after 5 redirects")
		}
		if next != nil {
			return next(req, via)
		}
		return nil
	}
	v.client = client
	v.ctx, v.cancel = context.WithCancel(context.Background())
	return v, nil
}

func cmpOr[T int | int64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// where names an IssuerConfig in errors: FILE:LINE when known.
func where(i int, c IssuerConfig) string {
	if c.File != "" {
		return fmt.Sprintf("%s:%d: jwt issuer %q", c.File, c.Line, c.Issuer)
	}
	return fmt.Sprintf("jwt[%d] issuer %q", i, c.Issuer)
}

// compile checks one IssuerConfig and adds it to v.
func (v *Verifier) compile(i int, c IssuerConfig) (*issuer, error) {
	w := where(i, c)
	switch {
	case c.Issuer == "":
		return nil, fmt.Errorf("%s: issuer is empty", w)
	case v.issuers[c.Issuer] != nil:
		return nil, fmt.Errorf("%s: issuer is configured twice", w)
	case len(c.Audiences) == 0:
		return nil, fmt.Errorf("%s: audiences is empty", w)
	case (c.JWKSFile == "") == (c.JWKSURL == ""):
		return nil, fmt.Errorf("%s: exactly one of jwks_file and jwks_url is needed", w)
	case c.Refresh < 0:
		return nil, fmt.Errorf("%s: jwks_refresh is negative", w)
	case c.ClockSkew < 0:
		return nil, fmt.Errorf("%s: clock_skew is negative", w)
	case len(c.Tenants) > 0 && c.Claims.Tenant == "":
		return nil, fmt.Errorf("%s: tenants needs claims.tenant", w)
	}
	is := &issuer{cfg: c, allowed: make(map[string]bool)}
	algs := c.Algorithms
	if len(algs) == 0 {
		algs = DefaultAlgorithms
	}
	for _, a := range algs {
		if strings.EqualFold(a, "none") || strings.HasPrefix(strings.ToUpper(a), "HS") {
			return nil, fmt.Errorf("%s: algorithms: %s is never allowed (none and HMAC algorithms are refused)", w, a)
		}
		if _, ok := algorithms[a]; !ok {
			return nil, fmt.Errorf("%s: algorithms: unknown algorithm %q (allowed: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA)", w, a)
		}
		is.allowed[a] = true
	}
	if len(c.Tenants) > 0 {
		is.tenants = make(map[string]bool, len(c.Tenants))
		for _, t := range c.Tenants {
			is.tenants[t] = true
		}
	}
	src := &keySource{
		issuer:          c.Issuer,
		file:            c.JWKSFile,
		url:             c.JWKSURL,
		refresh:         cmpOr(c.Refresh, DefaultRefresh),
		loadsOK:         v.metrics.loads.WithLabelValues(c.Issuer, resultOK),
		loadsErr:        v.metrics.loads.WithLabelValues(c.Issuer, resultError),
		refreshInterval: v.metrics.refreshes.WithLabelValues(c.Issuer, reasonInterval),
		refreshKID:      v.metrics.refreshes.WithLabelValues(c.Issuer, reasonUnknownKID),
	}
	if src.url != "" {
		u, err := url.Parse(src.url)
		if err != nil {
			return nil, fmt.Errorf("%s: jwks_url: not a URL", w)
		}
		if err := checkJWKSURL(u); err != nil {
			return nil, fmt.Errorf("%s: jwks_url %s: %w", w, u.Redacted(), err)
		}
		src.logURL = u.Redacted()
	}
	is.src = src
	v.issuers[c.Issuer] = is
	return is, nil
}

// checkJWKSURL allows https anywhere and http to loopback only.
func checkJWKSURL(u *url.URL) error {
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return errors.New("http is allowed only to a loopback host; use https")
		}
	default:
		return errors.New("the scheme must be https (or http to loopback)")
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	return nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// loadFile loads a jwks_file, bounded by MaxJWKSBytes.
func (v *Verifier) loadFile(src *keySource) error {
	ks, err := v.readFile(src.file, src.issuer)
	if err != nil {
		src.loadsErr.Inc()
		return err
	}
	src.loadsOK.Inc()
	src.keys.Store(ks)
	v.log.Debug("jwks loaded", "issuer", src.issuer, "file", src.file, "keys", len(ks.keys))
	return nil
}

func (v *Verifier) readFile(path, issuer string) (*keySet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	body, err := io.ReadAll(io.LimitReader(f, v.maxJWKS+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > v.maxJWKS {
		return nil, fmt.Errorf("larger than %d bytes", v.maxJWKS)
	}
	return parseKeySet(body, v.log, issuer)
}

// Close stops the background refreshes and waits for them (and any fetch
// in flight) to end. Verify keeps working with the keys held.
func (v *Verifier) Close() error {
	v.mu.Lock()
	v.closed = true
	v.mu.Unlock()
	v.cancel()
	v.wg.Wait()
	return nil
}

// startFetch starts a fetch of src's URL unless one is in flight (then it
// returns that one's channel) or the last began less than
// MinFetchInterval ago (then nil). The channel is closed when the fetch
// ends. reason labels the refresh metric; "" for the first fetch.
func (v *Verifier) startFetch(src *keySource, reason string) <-chan struct{} {
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.inflight != nil {
		return src.inflight
	}
	now := v.now()
	// A clock stepped back (negative age) does not block fetches forever.
	if age := now.Sub(src.lastFetch); src.fetched && age >= 0 && age < MinFetchInterval {
		return nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil
	}
	src.fetched, src.lastFetch = true, now
	switch reason {
	case reasonInterval:
		src.refreshInterval.Inc()
	case reasonUnknownKID:
		src.refreshKID.Inc()
	}
	done := make(chan struct{})
	src.inflight = done
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		v.fetch(src)
		src.mu.Lock()
		src.inflight = nil
		src.mu.Unlock()
		close(done)
	}()
	return done
}

// fetch gets src's URL and, when it parses, makes it the key set; on any
// failure the last good set stays.
func (v *Verifier) fetch(src *keySource) {
	body, err := v.get(src.url)
	var ks *keySet
	if err == nil {
		src.mu.Lock()
		same := src.keys.Load() != nil && bytes.Equal(body, src.body)
		src.mu.Unlock()
		if same {
			ks = src.keys.Load()
		} else {
			ks, err = parseKeySet(body, v.log, src.issuer)
		}
	}
	changed := false
	src.mu.Lock()
	if err != nil {
		src.failures++
	} else {
		src.failures = 0
		if ks != src.keys.Load() {
			changed = true
			src.body = body
			src.keys.Store(ks)
		}
	}
	src.mu.Unlock()
	if err != nil {
		src.loadsErr.Inc()
		v.log.Warn("jwks fetch failed; keeping the last good key set",
			"issuer", src.issuer, "url", src.logURL, "have_keys", src.keys.Load() != nil, "error", err.Error())
		return
	}
	src.loadsOK.Inc()
	if changed {
		v.log.Info("jwks loaded", "issuer", src.issuer, "url", src.logURL, "keys", len(ks.keys))
	} else {
		v.log.Debug("jwks unchanged", "issuer", src.issuer, "url", src.logURL)
	}
}

// get fetches one JWKS body, bounded in time and size.
func (v *Verifier) get(rawURL string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(v.ctx, v.fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("HTTP status %d", resp.StatusCode)
	}
	if resp.ContentLength > v.maxJWKS {
		return nil, fmt.Errorf("body larger than %d bytes", v.maxJWKS)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, v.maxJWKS+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if int64(len(body)) > v.maxJWKS {
		return nil, fmt.Errorf("body larger than %d bytes", v.maxJWKS)
	}
	return body, nil
}

// refreshLoop fetches src every refresh; after a failure it tries again
// sooner (MinFetchInterval, doubling up to refresh).
func (v *Verifier) refreshLoop(src *keySource) {
	defer v.wg.Done()
	for {
		wait := src.refresh
		src.mu.Lock()
		failures := src.failures
		src.mu.Unlock()
		if failures > 0 {
			if backoff := MinFetchInterval << min(failures-1, 16); backoff < wait {
				wait = backoff
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-v.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if done := v.startFetch(src, reasonInterval); done != nil {
			select {
			case <-done:
			case <-v.ctx.Done():
				return
			}
		}
	}
}

// Verify checks token and returns its identity, or an error wrapping
// ErrInvalid with the reason. Tokens verified before and still within
// their exp (with their key set unchanged) come from the cache without a
// signature check. An unknown kid waits for a refresh of the issuer's
// JWKS URL (see MinFetchInterval), bounded by ctx.
func (v *Verifier) Verify(ctx context.Context, token string) (*Result, error) {
	if len(token) > v.maxToken {
		return nil, v.rejected(ctx, errTooLarge)
	}
	now := v.now()
	digest := tokenDigest(token)
	if e, ok := v.cache.get(&digest, now); ok {
		if e.src.keys.Load() == e.keys {
			v.metrics.cacheHits.Inc()
			return e.res, nil
		}
		v.cache.remove(&digest)
	}
	v.metrics.cacheMisses.Inc()
	res, src, ks, err := v.verify(ctx, token, now)
	if err != nil {
		return nil, v.rejected(ctx, err)
	}
	if now.Before(res.Expiry) {
		v.cache.put(&digest, cacheEntry{res: res, expires: res.Expiry.UnixNano(), keys: ks, src: src}, now)
	}
	return res, nil
}

// Cached returns token's identity when the verified-token cache holds it
// (verified before, within its exp, its key set unchanged), and false
// otherwise, without verifying anything: no signature check, no fetch. A
// false is no verdict on the token; Verify it. A hit counts as Verify's
// does; a miss counts nothing (the Verify that follows counts it).
func (v *Verifier) Cached(token string) (*Result, bool) {
	if len(token) > v.maxToken {
		return nil, false
	}
	digest := tokenDigest(token)
	e, ok := v.cache.get(&digest, v.now())
	if !ok || e.src.keys.Load() != e.keys {
		return nil, false
	}
	v.metrics.cacheHits.Inc()
	return e.res, true
}

// tokenDigest is the cache key of a token. It hashes the string's bytes
// in place: []byte(token) would copy the token to the heap (an allocation
// per Verify, and one more copy of a secret in memory); sha256 only reads
// its input and keeps nothing.
func tokenDigest(token string) [32]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

func (v *Verifier) rejected(ctx context.Context, err error) error {
	if v.log.Enabled(ctx, slog.LevelDebug) {
		v.log.DebugContext(ctx, "jwt rejected", "reason", err.Error())
	}
	return err
}

// verify does the work of an uncached Verify: the header and claims are
// read unverified only to pick the issuer and the key.
func (v *Verifier) verify(ctx context.Context, token string, now time.Time) (*Result, *keySource, *keySet, error) {
	if strings.Count(token, ".") != 2 {
		return nil, nil, nil, errMalformed
	}
	msg, err := jws.ParseString(token, jws.WithCompact())
	if err != nil {
		return nil, nil, nil, errMalformed
	}
	sigs := msg.Signatures()
	if len(sigs) != 1 {
		return nil, nil, nil, errMultipleSigs
	}
	hdr := sigs[0].ProtectedHeaders()
	if hdr == nil {
		return nil, nil, nil, errBadHeader
	}
	algv, ok := hdr.Algorithm()
	if !ok {
		return nil, nil, nil, errBadHeader
	}
	if _, ok := hdr.B64(); ok {
		return nil, nil, nil, errUnsupported
	}
	if _, ok := hdr.Critical(); ok {
		return nil, nil, nil, errUnsupported
	}
	kid, hasKID := hdr.KeyID()
	payload := msg.Payload()
	claims, err := decodeClaims(payload)
	if err != nil {
		return nil, nil, nil, errBadPayload
	}
	iss, ok := claims["iss"].(string)
	if !ok {
		return nil, nil, nil, errNoIssuer
	}
	is := v.issuers[iss]
	if is == nil {
		return nil, nil, nil, errUnknownIss
	}
	alg := algv.String()
	if !is.allowed[alg] {
		// none and HS* always end here: New never allows them.
		return nil, nil, nil, invalid("algorithm not allowed for issuer " + is.cfg.Issuer)
	}
	ks := is.src.keys.Load()
	if !anyFits(ks, alg, kid, hasKID) && (ks == nil || hasKID && ks.byKID[kid] == nil) && is.src.url != "" {
		// An unknown kid (or no keys yet): the issuer may have rotated.
		if done := v.startFetch(is.src, reasonUnknownKID); done != nil {
			select {
			case <-done:
			case <-ctx.Done():
				return nil, nil, nil, &invalidError{reason: "interrupted waiting for the JWKS of issuer " + is.cfg.Issuer, cause: ctx.Err()}
			}
			ks = is.src.keys.Load()
		}
	}
	switch {
	case ks == nil:
		return nil, nil, nil, invalid("no key set loaded for issuer " + is.cfg.Issuer)
	case hasKID && ks.byKID[kid] == nil:
		return nil, nil, nil, invalid("unknown kid for issuer " + is.cfg.Issuer)
	case !anyFits(ks, alg, kid, hasKID):
		return nil, nil, nil, invalid("no key of issuer " + is.cfg.Issuer + " fits the token's kid and algorithm")
	}
	list := ks.keys
	if hasKID {
		list = ks.byKID[kid]
	}
	spec := algorithms[alg]
	raw := []byte(token)
	verified := false
	for _, k := range list {
		if !k.fits(alg) {
			continue
		}
		if v.onSignatureCheck != nil {
			v.onSignatureCheck()
		}
		got, err := jws.Verify(raw, jws.WithKey(spec.alg, k.pub), jws.WithCompact(),
			jws.WithAlgorithmMatch(true), jws.WithCritValidation(true))
		if err == nil && bytes.Equal(got, payload) {
			verified = true
			break
		}
	}
	if !verified {
		return nil, nil, nil, invalid("bad signature for issuer " + is.cfg.Issuer)
	}
	res, err := is.check(claims, now)
	if err != nil {
		return nil, nil, nil, err
	}
	return res, is.src, ks, nil
}

// anyFits says whether ks has a key for a token with alg and (if hasKID)
// kid.
func anyFits(ks *keySet, alg, kid string, hasKID bool) bool {
	if ks == nil {
		return false
	}
	list := ks.keys
	if hasKID {
		list = ks.byKID[kid]
	}
	for _, k := range list {
		if k.fits(alg) {
			return true
		}
	}
	return false
}

// decodeClaims decodes a JWT claims set: one JSON object, numbers kept
// as written.
func decodeClaims(payload []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil {
		return nil, err
	}
	if claims == nil {
		return nil, errors.New("not an object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data")
	}
	return claims, nil
}

// check validates verified claims against the issuer's rules.
func (is *issuer) check(claims map[string]any, now time.Time) (*Result, error) {
	name := is.cfg.Issuer
	skew := is.cfg.ClockSkew
	exp, ok, err := numericDate(claims["exp"])
	switch {
	case err != nil:
		return nil, invalid("exp is not a valid date (issuer " + name + ")")
	case !ok:
		return nil, invalid("no exp claim (issuer " + name + ")")
	case !now.Before(exp.Add(skew)):
		return nil, invalid("expired (issuer " + name + ")")
	}
	nbf, ok, err := numericDate(claims["nbf"])
	switch {
	case err != nil:
		return nil, invalid("nbf is not a valid date (issuer " + name + ")")
	case ok && now.Add(skew).Before(nbf):
		return nil, invalid("not yet valid (issuer " + name + ")")
	}
	if !is.audienceOK(claims["aud"]) {
		return nil, invalid("aud has none of the audiences of issuer " + name)
	}
	res := &Result{Issuer: name, Expiry: exp, Claims: claims}
	if sub, present := claims["sub"]; present {
		s, ok := sub.(string)
		if !ok {
			return nil, invalid("sub is not a string (issuer " + name + ")")
		}
		res.Subject = s
	}
	for _, f := range [...]struct {
		claim string
		dst   *string
	}{{is.cfg.Claims.Tenant, &res.Tenant}, {is.cfg.Claims.Tier, &res.Tier}, {is.cfg.Claims.User, &res.User}} {
		if f.claim == "" {
			continue
		}
		s, ok := claims[f.claim].(string)
		if !ok || s == "" {
			return nil, invalid("claim " + f.claim + " is missing or not a string (issuer " + name + ")")
		}
		*f.dst = s
	}
	if is.tenants != nil && !is.tenants[res.Tenant] {
		return nil, invalid("tenant not allowed for issuer " + name)
	}
	return res, nil
}

// audienceOK: aud (a string or an array of strings) holds one of the
// issuer's audiences.
func (is *issuer) audienceOK(aud any) bool {
	switch a := aud.(type) {
	case string:
		return contains(is.cfg.Audiences, a)
	case []any:
		for _, e := range a {
			if s, ok := e.(string); ok && contains(is.cfg.Audiences, s) {
				return true
			}
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// maxNumericDate is 9999-12-31T23:59:59Z; later dates are refused.
const maxNumericDate = 253402300799

// numericDate reads a NumericDate claim (seconds since the epoch, maybe
// fractional); ok is false when absent.
func numericDate(v any) (t time.Time, ok bool, err error) {
	if v == nil {
		return time.Time{}, false, nil
	}
	n, isNum := v.(json.Number)
	if !isNum {
		return time.Time{}, true, errors.New("not a number")
	}
	f, err := strconv.ParseFloat(n.String(), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, true, errors.New("out of range")
	}
	sec := math.Floor(f)
	return time.Unix(int64(sec), int64((f-sec)*1e9)), true, nil
}
