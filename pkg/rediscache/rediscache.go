// Package rediscache keeps the response cache's entries in Redis
// (standalone, Sentinel-managed or Cluster), so that every sidecar sharing
// the Redis shares one cache. It implements cachestore.Store.
//
// # Key layout
//
// With P the key prefix (default "floodgate:"), HP a digest of a path
// group (host and path: the first 8 bytes of SHA-256 over
// "len(host):host path", in hex) and G that group as "len(host):host path":
//
//	P{cache:HP}p            SET of the group's primaries
//	P{cache:HP}k:PRIMARY    HASH for one Key: g = G, v = its Vary names,
//	                        x = the latest Expires its TTL was set to,
//	                        n = at most its earliest variant's Expires,
//	                        and per variant e:VID = the encoded entry,
//	                        m:VID = "EXPIRES SIZE STAMP"
//	P{cache}paths           ZSET (score 0) of "PATH\0HOST\0HP", one per group
//	P{cache}gexp            ZSET of the same members, score = latest Expires
//	P{cache}ents            ZSET of entry ids "HP LEN:PRIMARY VID", score = Expires
//	P{cache}sizes           HASH entry id -> Entry.Size; and !hi = the
//	                        index keys' TTL, !p = when a Put prunes next
//	P{cache}bytes           the sum of sizes
//	P{cache}tag:TAG         SET of "STAMP ID" members, the entries tagged TAG
//
// Hash tags: the keys of one path group share {cache:HP}, so they live on
// one Redis Cluster slot, and one script reads a Key's Vary names and the
// request's variant together (Get is one command) and one script removes a
// whole group, every user's and variant's entry, atomically and without
// SCAN or KEYS. The index keys share {cache}, so the script that maintains
// them sees every index at once; all of them live on one node of a
// cluster, which carries the write and purge traffic of the index (never a
// Get). The tag {cache:HP} can never equal {cache}, nor the {XXXXXXXX}
// tags of pkg/redisstore's counters under the same prefix.
//
// Every key has a TTL: an entry's hash and its group's set live until the
// latest Expires they hold (PEXPIREAT, extended, never shortened), the
// index keys until the latest score they hold plus a slack (a sixteenth of
// that entry's time to live, at most a minute), a tag set until the latest
// Expires of the entries tagged. The scripts compare against what they
// stored (x, !hi) rather than ask for a TTL, and extend only when the new
// Expires is later: most stores set no TTL on the index at all, and a
// store into an existing Key with an earlier Expires none anywhere. An
// index key recreated without a TTL (after eviction) gets one at the next
// extension or prune (at most a second into a run of stores).
//
// # Commands
//
//	Get         1 (EVALSHA get.lua on the group's slot); inside it one
//	            HMGET for a Key without Vary, HMGET and HGET with one
//	Put         1 round trip: put.lua on the group's slot and index.lua,
//	            pipelined (on a cluster, in parallel per node); a second
//	            (index.lua drop) only when put.lua dropped other variants.
//	            Inside: put.lua 4 for a new Key (HMGET, HSET, PEXPIREAT,
//	            SADD) and, for a new primary, PTTL, PEXPIREAT, TIME;
//	            index.lua 7 (TIME, HMGET, ZADD ×3, INCRBY, HSET), and at
//	            most once a second the prune, and when the TTL is extended
//	            PEXPIREAT ×5, per tag SADD, PTTL (PEXPIREAT)
//	Stats       1 (index.lua: prunes what expired, reads the counters)
//	Invalidate  up to 3 round trips: index look-ups (ZRANGEBYLEX, SMEMBERS)
//	            pipelined; purge.lua per path group, pipelined (in parallel
//	            per node on a cluster); index.lua to drop the entries'
//	            index members. A Host with exact Paths only needs no look-up.
//
// Request values of Authorization, Cookie and Proxy-Authorization are sent
// and stored only as digests (see protect); other request headers are
// sent as they are, packed in one script argument of Get (see
// appendHeaders).
//
// # Stats
//
// Entries is the number of entry ids in the index and Bytes the sum of
// their sizes, both kept in the index slot by the same scripts that change
// it, and pruned of expired entries (on Redis's clock) before each Stats
// (a Put prunes at most once a second). Each script prunes at most 1000
// expired entries and groups per call, so after a mass expiry Stats may
// count some for a few more calls. Beyond that they are exact but for
// these races: Put stores an entry and indexes it in two commands (one
// pipeline; on a cluster the index's node may run its part first), so an
// Invalidate that runs between the two can leave the index counting an
// entry that is gone (until the entry's Expires, when it is pruned); a Put
// that drops other variants (its Vary names changed) takes them out of the
// index in a second round trip, so a Stats between the two counts them; a
// Put whose index script fails leaves an entry that the index does not
// know (Put then tries to remove it again); and a Put whose entry script
// fails while its index script worked leaves an index member with no
// entry (Put then tries to drop it again).
// Scripts read a group's hashes by keys derived from ARGV, which is safe
// on a cluster because the hash tag pins them to the declared key's slot.
//
// A whole-group purge is one script on one node: a path with very many
// users' entries holds that node for the purge's length.
//
// Errors start with "rediscache: " and wrap their cause with %w.
package rediscache

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/pkg/breaker"
	"github.com/floodgate/floodgate/pkg/cachestore"
)

// DefaultKeyPrefix is Options.KeyPrefix when it is empty; the same as
// pkg/redisstore's, so one --redis-key-prefix covers both.
const DefaultKeyPrefix = "floodgate:"

// Options configure a Store.
type Options struct {
	// KeyPrefix starts every key; default DefaultKeyPrefix. It may not
	// contain '{' or '}', which would move the Redis Cluster hash tags.
	KeyPrefix string
}

var (
	//go:embed variant.lua
	variantSrc string
	//go:embed common.lua
	commonSrc string
	//go:embed get.lua
	getSrc string
	//go:embed put.lua
	putSrc string
	//go:embed purge.lua
	purgeSrc string
	//go:embed index.lua
	indexSrc string

	getScript   = redis.NewScript(variantSrc + getSrc)
	putScript   = redis.NewScript(commonSrc + putSrc)
	purgeScript = redis.NewScript(commonSrc + purgeSrc)
	indexScript = redis.NewScript(commonSrc + indexSrc)
)

// Store is a cachestore.Store on Redis. It is safe for concurrent use.
// Get returns a new Entry each time, which the caller may keep.
type Store struct {
	client redis.UniversalClient
	prefix string
	index  [5]string // paths, gexp, ents, sizes, bytes
}

var _ cachestore.Store = (*Store)(nil)

// New returns a Store on client: a *redis.Client (standalone, or a
// failover client through Sentinel) or a *redis.ClusterClient. The caller
// owns the client.
func New(client redis.UniversalClient, o Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("rediscache: the client is nil")
	}
	if strings.ContainsAny(o.KeyPrefix, "{}") {
		return nil, fmt.Errorf("rediscache: Options.KeyPrefix %q may not contain '{' or '}': they would change the Redis Cluster hash tags", o.KeyPrefix)
	}
	p := o.KeyPrefix
	if p == "" {
		p = DefaultKeyPrefix
	}
	s := &Store{client: client, prefix: p}
	for i, name := range []string{"paths", "gexp", "ents", "sizes", "bytes"} {
		s.index[i] = p + "{cache}" + name
	}
	return s, nil
}

// group is one path group's names.
type group struct {
	g    string // "len(host):host path", the hash's g field
	hp   string // digest of g, 16 hex digits
	slot string // P{cache:HP}
}

func (s *Store) group(host, path string) group {
	g := strconv.Itoa(len(host)) + ":" + host + path
	sum := sha256.Sum256([]byte(g))
	hp := hex.EncodeToString(sum[:8])
	return group{g: g, hp: hp, slot: s.prefix + "{cache:" + hp + "}"}
}

func (s *Store) groupOf(hp string) string { return s.prefix + "{cache:" + hp + "}" }

// member is the group's member in the paths and gexp indexes.
func member(host, path, hp string) string { return path + "\x00" + host + "\x00" + hp }

// entryID names one entry in the index: HP, the primary (length
// prefixed) and the variant id.
func entryID(hp, primary, vid string) string {
	return hp + strconv.Itoa(len(primary)) + ":" + primary + vid
}

// parseEntryID splits an entry id; ok is false for a malformed one.
func parseEntryID(id string) (hp, primary, vid string, ok bool) {
	if len(id) < 16 {
		return "", "", "", false
	}
	hp, rest := id[:16], id[16:]
	colon := strings.IndexByte(rest, ':')
	if colon < 0 {
		return "", "", "", false
	}
	n, err := strconv.Atoi(rest[:colon])
	if err != nil || n < 0 || n > len(rest)-colon-1 {
		return "", "", "", false
	}
	rest = rest[colon+1:]
	return hp, rest[:n], rest[n:], true
}

// secret are the request headers whose values never reach Redis as they
// are: a Vary on them (Vary: Cookie is common) would otherwise put session
// cookies and credentials into hash field names, index members and the
// script arguments that SLOWLOG and MONITOR show. Their values are replaced
// by a digest, in Get and Put alike, so variants still compare equal
// exactly when the values do.
var secret = []string{"authorization", "cookie", "proxy-authorization"}

func isSecret(name string) bool {
	for _, s := range secret {
		if strings.EqualFold(name, s) {
			return true
		}
	}
	return false
}

// protect is the value of h as it is sent to Redis.
func protect(h cachestore.Header) string {
	if !isSecret(h.Name) {
		return h.Value
	}
	sum := sha256.Sum256([]byte(h.Value))
	return "#" + base64.RawURLEncoding.EncodeToString(sum[:18])
}

// protectAll is req with protect applied, req itself when nothing changes.
func protectAll(req []cachestore.Header) []cachestore.Header {
	var out []cachestore.Header
	for i, h := range req {
		if !isSecret(h.Name) {
			continue
		}
		if out == nil {
			out = append([]cachestore.Header(nil), req...)
		}
		out[i].Value = protect(h)
	}
	if out == nil {
		return req
	}
	return out
}

// encodeVary is the v field: each name, lower case, as LEN:NAME.
func encodeVary(vary []string) string {
	var b []byte
	for _, name := range vary {
		b = strconv.AppendInt(b, int64(len(name)), 10)
		b = append(b, ':')
		b = append(b, strings.ToLower(name)...)
	}
	return string(b)
}

// getCall is what a Get sends, pooled: go-redis has written it by the
// time the command returns, so it goes back after each call. Its two
// script arguments are slices of buf behind pointers (an any holding a
// pointer needs no allocation), which go-redis writes through
// MarshalBinary.
type getCall struct {
	buf     []byte
	g, hdrs argBytes
	keys    [1]string
	args    [2]any
}

type argBytes []byte

func (a *argBytes) MarshalBinary() ([]byte, error) { return *a, nil }

var getCalls = sync.Pool{New: func() any {
	c := &getCall{buf: make([]byte, 0, 1024)}
	c.args = [2]any{&c.g, &c.hdrs}
	return c
}}

// appendHeaders packs req as get.lua reads it (see variant.lua): per
// header LEN:NAME, the name in ASCII lower case, and LEN:VALUE, the value
// protected.
func appendHeaders(b []byte, req []cachestore.Header) []byte {
	for _, h := range req {
		b = strconv.AppendInt(b, int64(len(h.Name)), 10)
		b = append(b, ':')
		for i := 0; i < len(h.Name); i++ {
			c := h.Name[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b = append(b, c)
		}
		v := h.Value
		if isSecret(h.Name) {
			v = protect(h)
		}
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		b = append(b, v...)
	}
	return b
}

// Get returns the fresh entry of the request's variant, in one command.
func (s *Store) Get(ctx context.Context, k cachestore.Key, req []cachestore.Header, now time.Time) (*cachestore.Entry, error) {
	c := getCalls.Get().(*getCall)
	b := strconv.AppendInt(c.buf[:0], int64(len(k.Host)), 10)
	b = append(b, ':')
	b = append(b, k.Host...)
	b = append(b, k.Path...)
	g := len(b)
	sum := sha256.Sum256(b)
	var hp [16]byte
	hex.Encode(hp[:], sum[:8])
	b = appendHeaders(b, req)
	c.g, c.hdrs = b[:g], b[g:]
	c.keys[0] = s.prefix + "{cache:" + string(hp[:]) + "}k:" + k.Primary
	v, err := getScript.Run(ctx, s.client, c.keys[:], c.args[:]...).Result()
	c.buf, c.g, c.hdrs, c.keys[0] = b[:0], nil, nil, ""
	if cap(b) <= 64<<10 {
		getCalls.Put(c)
	}
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("rediscache: get: %w", err)
	}
	str, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("rediscache: get: %w: reply of type %T", ErrCorrupt, v)
	}
	e, err := decodeEntryString(str)
	if err != nil {
		return nil, fmt.Errorf("rediscache: get: %w", err)
	}
	if !now.Before(e.Expires) {
		return nil, nil
	}
	return e, nil
}

// Put stores e under k for the variant vary and req give, in one round
// trip: the entry in its group's slot and its index, pipelined (on a
// cluster, in parallel when the two slots are on two nodes). Only when
// the entry's script dropped other variants (the Vary names changed, or
// variants had expired) does a second round trip take them out of the
// index.
func (s *Store) Put(ctx context.Context, k cachestore.Key, vary []string, req []cachestore.Header, e *cachestore.Entry) error {
	if e == nil {
		return errors.New("rediscache: put: nil entry")
	}
	grp := s.group(k.Host, k.Path)
	vid := cachestore.VariantID(vary, protectAll(req))
	expires := e.Expires.UnixMilli()
	size := e.Size()
	stamp := strconv.FormatUint(rand.Uint64(), 36)
	hash := grp.slot + "k:" + k.Primary
	id := entryID(grp.hp, k.Primary, vid)
	keys := make([]string, 0, len(s.index)+len(e.Tags))
	keys = append(keys, s.index[:]...)
	for _, t := range e.Tags {
		keys = append(keys, s.tagKey(t))
	}
	calls := [2]scriptCall{
		{putScript, []string{hash, grp.slot + "p"},
			[]any{grp.g, encodeVary(vary), vid, appendEntry(nil, e), expires, size, stamp, k.Primary}},
		{indexScript, keys, []any{"put", member(k.Host, k.Path, grp.hp), id, expires, size, stamp + " " + id}},
	}
	var res [2]any
	var errs [2]error
	runCalls(ctx, s.client, calls[:], res[:], errs[:])
	bg := context.WithoutCancel(ctx)
	switch {
	case errs[0] != nil && errs[1] == nil:
		// Indexed but not stored: take the id out of the index again (best
		// effort; it is pruned at its Expires in any case).
		_, _ = run(bg, s.client, indexScript, s.index[:], []any{"drop", id})
		return fmt.Errorf("rediscache: put: %w", errs[0])
	case errs[0] != nil:
		return fmt.Errorf("rediscache: put: %w", errs[0])
	case errs[1] != nil:
		// Unindexed, the entry could not be found by prefix or tag: take
		// it out again (best effort; it expires in any case).
		_, _ = run(bg, s.client, purgeScript, []string{grp.slot + "p"},
			[]any{grp.slot + "k:", "", k.Primary, vid, stamp})
		return fmt.Errorf("rediscache: put: index: %w", errs[1])
	}
	dropped, _ := res[0].([]any)
	if len(dropped) == 0 {
		return nil
	}
	drop := make([]any, 1, 1+len(dropped))
	drop[0] = "drop"
	for _, d := range dropped {
		if d, ok := d.(string); ok {
			drop = append(drop, entryID(grp.hp, k.Primary, d))
		}
	}
	if _, err := run(ctx, s.client, indexScript, s.index[:], drop); err != nil {
		return fmt.Errorf("rediscache: put: index: %w", err)
	}
	return nil
}

func (s *Store) tagKey(tag string) string { return s.prefix + "{cache}tag:" + tag }

// Stats returns the entries and bytes the index counts, after pruning
// what has expired (see the package comment for how exact they are).
func (s *Store) Stats(ctx context.Context) (cachestore.Stats, error) {
	v, err := run(ctx, s.client, indexScript, s.index[:], []any{"stats"})
	if err != nil {
		return cachestore.Stats{}, fmt.Errorf("rediscache: stats: %w", err)
	}
	return parseStats(v)
}

func parseStats(v any) (cachestore.Stats, error) {
	a, ok := v.([]any)
	if !ok || len(a) != 2 {
		return cachestore.Stats{}, fmt.Errorf("rediscache: stats: unexpected reply %v", v)
	}
	n, _ := a[0].(int64)
	b, _ := a[1].(int64)
	return cachestore.Stats{Entries: n, Bytes: b}, nil
}

// Invalidate removes the entries sel selects and says how many.
func (s *Store) Invalidate(ctx context.Context, sel cachestore.Selector) (int, error) {
	whole := map[string]bool{}   // HPs of groups removed whole
	var order []string           // the same, in a stable order
	tagged := map[string][]any{} // HP -> primary, vid, stamp triples
	addWhole := func(hp string) {
		if !whole[hp] {
			whole[hp] = true
			order = append(order, hp)
		}
	}
	// Look-ups in the index, one pipeline.
	pipe := s.client.Pipeline()
	var ranges []*redis.StringSliceCmd
	for _, p := range sel.Paths {
		if sel.Host != "" {
			addWhole(s.group(sel.Host, p).hp)
			continue
		}
		ranges = append(ranges, pipe.ZRangeByLex(ctx, s.index[0], &redis.ZRangeBy{Min: "[" + p + "\x00", Max: "(" + p + "\x01"}))
	}
	for _, p := range sel.Prefixes {
		lo, hi := "-", prefixEnd(p)
		if p != "" {
			lo = "[" + p
		}
		ranges = append(ranges, pipe.ZRangeByLex(ctx, s.index[0], &redis.ZRangeBy{Min: lo, Max: hi}))
	}
	var tags []*redis.StringSliceCmd
	for _, t := range sel.Tags {
		tags = append(tags, pipe.SMembers(ctx, s.tagKey(t)))
	}
	if len(ranges)+len(tags) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, fmt.Errorf("rediscache: invalidate: index: %w", err)
		}
	}
	for _, r := range ranges {
		for _, m := range r.Val() {
			if hp, ok := s.memberHP(m, sel.Host); ok {
				addWhole(hp)
			}
		}
	}
	for _, t := range tags {
		for _, m := range t.Val() {
			stamp, id, ok := strings.Cut(m, " ")
			if !ok {
				continue
			}
			hp, primary, vid, ok := parseEntryID(id)
			if !ok || whole[hp] {
				continue
			}
			tagged[hp] = append(tagged[hp], primary, vid, stamp)
		}
	}
	// Purges, one script per group, one pipeline.
	calls := order
	for hp := range tagged {
		calls = append(calls, hp)
	}
	argsOf := func(hp string) []any {
		if whole[hp] {
			return []any{s.groupOf(hp) + "k:", "*"}
		}
		return append([]any{s.groupOf(hp) + "k:", ""}, tagged[hp]...)
	}
	results := make([]any, len(calls))
	errs := runPipelined(ctx, s.client, purgeScript, len(calls), func(i int) ([]string, []any) {
		return []string{s.groupOf(calls[i]) + "p"}, argsOf(calls[i])
	}, results)
	removed := 0
	drop := []any{"drop"}
	var firstErr error
	for i, hp := range calls {
		if errs[i] != nil {
			if firstErr == nil {
				firstErr = errs[i]
			}
			continue
		}
		pairs, _ := results[i].([]any)
		for j := 0; j+1 < len(pairs); j += 2 {
			primary, _ := pairs[j].(string)
			vid, _ := pairs[j+1].(string)
			drop = append(drop, entryID(hp, primary, vid))
			removed++
		}
	}
	// The index: drop what went, and the tag sets if every purge worked.
	if len(calls) > 0 || len(sel.Tags) > 0 {
		keys := append([]string(nil), s.index[:]...)
		if firstErr == nil {
			for _, t := range sel.Tags {
				keys = append(keys, s.tagKey(t))
			}
		}
		if _, err := run(ctx, s.client, indexScript, keys, drop); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("index: %w", err)
		}
	}
	if firstErr != nil {
		return removed, fmt.Errorf("rediscache: invalidate: %w", firstErr)
	}
	return removed, nil
}

// memberHP returns the HP of a paths member, if it is on host ("" = any).
func (s *Store) memberHP(m, host string) (string, bool) {
	if len(m) < 18 || m[len(m)-17] != 0 {
		return "", false
	}
	hp := m[len(m)-16:]
	if host == "" {
		return hp, true
	}
	// "PATH\0HOST\0HP": the path is what comes before host.
	n := len(m) - 18 - len(host)
	if n < 0 || m[n] != 0 || m[n+1:len(m)-17] != host {
		return "", false
	}
	return hp, s.group(host, m[:n]).hp == hp
}

// prefixEnd is the exclusive ZRANGEBYLEX bound after every string that
// starts with p: p with its last byte below 0xff incremented.
func prefixEnd(p string) string {
	b := []byte(p)
	for len(b) > 0 && b[len(b)-1] == 0xff {
		b = b[:len(b)-1]
	}
	if len(b) == 0 {
		return "+"
	}
	b[len(b)-1]++
	return "(" + string(b)
}

// run runs one script: EVALSHA, and EVAL when the node lacks the script.
func run(ctx context.Context, c redis.Scripter, sc *redis.Script, keys []string, args []any) (any, error) {
	return sc.Run(ctx, c, keys, args...).Result()
}

// scriptCall is one script's call in a pipeline.
type scriptCall struct {
	sc   *redis.Script
	keys []string
	args []any
}

// runCalls runs calls in one pipeline (go-redis sends a cluster's to the
// nodes in parallel), again with EVAL for those a node lacked the script
// for. It fills results and each call's error.
func runCalls(ctx context.Context, c redis.UniversalClient, calls []scriptCall, results []any, errs []error) {
	cmds := make([]*redis.Cmd, len(calls))
	pipe := c.Pipeline()
	for i, cl := range calls {
		cmds[i] = cl.sc.EvalSha(ctx, pipe, cl.keys, cl.args...)
	}
	_, _ = pipe.Exec(ctx)
	var retry redis.Pipeliner
	for i, cmd := range cmds {
		if isNoScript(cmd.Err()) {
			if retry == nil {
				retry = c.Pipeline()
			}
			cmds[i] = calls[i].sc.Eval(ctx, retry, calls[i].keys, calls[i].args...)
		}
	}
	if retry != nil {
		_, _ = retry.Exec(ctx)
	}
	for i, cmd := range cmds {
		results[i], errs[i] = cmd.Result()
	}
}

// runPipelined runs n calls of one script in a pipeline (go-redis sends a
// cluster's to the nodes in parallel), again with EVAL for those a node
// lacked the script for. It fills results and returns each call's error.
func runPipelined(ctx context.Context, c redis.UniversalClient, sc *redis.Script, n int, call func(i int) ([]string, []any), results []any) []error {
	errs := make([]error, n)
	if n == 0 {
		return errs
	}
	cmds := make([]*redis.Cmd, n)
	pipe := c.Pipeline()
	for i := 0; i < n; i++ {
		keys, args := call(i)
		cmds[i] = sc.EvalSha(ctx, pipe, keys, args...)
	}
	_, _ = pipe.Exec(ctx)
	var retry redis.Pipeliner
	for i, cmd := range cmds {
		if isNoScript(cmd.Err()) {
			if retry == nil {
				retry = c.Pipeline()
			}
			keys, args := call(i)
			cmds[i] = sc.Eval(ctx, retry, keys, args...)
		}
	}
	if retry != nil {
		_, _ = retry.Exec(ctx)
	}
	for i, cmd := range cmds {
		results[i], errs[i] = cmd.Result()
	}
	return errs
}

func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}

// Outage reports whether err, from one of the store's calls, means Redis
// cannot serve now (cachestore.Remote): a network error, a timeout, or
// Redis saying so.
func (s *Store) Outage(err error) bool { return breaker.Outage(err) }
