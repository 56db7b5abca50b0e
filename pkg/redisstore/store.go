// Package redisstore keeps rate-limit counters in Redis, so that every
// sidecar sharing one Redis (standalone, Sentinel or Cluster) enforces one
// global limit. It implements quota.Limiter with the scripts of
// pkg/lua: one script call decides all of a request's hits that live on one
// Redis node, atomically, on Redis's clock.
//
// On a standalone Redis (or a Sentinel-managed master) every Take is exactly
// one script call, whatever the number of hits, and at most one round trip:
// the calls of concurrent Takes share pipelines (batch.go), so that under
// load a round trip carries many decisions. On Redis Cluster, hits are
// grouped by slot (see key.go for the hash tags that make a request's
// descriptors share a slot when they share their first entry); the groups of
// one request go out together in one pipeline, which go-redis sends to the
// nodes in parallel. What all-or-nothing means across groups is described in
// docs/algorithms.md ("Redis"): each group is atomic, quota-mode hits are
// judged over all groups together, and when the request is rejected the
// groups that took are refunded.
//
// Every decision's wait for Redis is bounded by Options.Timeout (the read
// timeout by default), queue and retries included, and runs to its end even
// when the caller gives up earlier (Envoy's rate-limit filter does after
// 20 ms by default): a Redis that stalls then shows as timeouts, which the
// breaker counts. When Redis is down, the breaker makes Take and Ping fail
// at once with ErrUnavailable instead of waiting for a timeout per
// request, while a background probe finds out, within about a second, when
// Redis is back. On a cluster each master has a breaker of its own
// (health.go): while one fails over, keys on the others are decided.
//
// The Store talks to Redis through a go-redis client it is given (New):
// NewClient builds one from a URL and settings, or the caller brings its
// own. The caller owns the client: Store.Close does not close it.
//
// Every error a Store returns starts with "redisstore: " once, and wraps
// its cause (go-redis's, the context's, pkg/lua's) with %w.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/pkg/breaker"
	"github.com/floodgate/floodgate/pkg/lua"
	"github.com/floodgate/floodgate/pkg/quota"
)

var _ quota.Limiter = (*Store)(nil)

// ErrUnavailable is wrapped by the errors of Take and Ping while the store
// considers Redis down (after Options.BreakerFailures outage errors in a
// row), until a probe reaches Redis again.
var ErrUnavailable = errors.New("redisstore: redis unavailable")

// ErrClosed is returned by Take and Ping after Close.
var ErrClosed = errors.New("redisstore: closed")

// Store is a Redis-backed quota.Limiter. It is safe for concurrent
// use.
type Store struct {
	client  redis.UniversalClient
	cluster *redis.ClusterClient // the client, when it is one: calls go by slot
	keys    keyBuilder
	now     func() time.Time
	onState func(node string, up bool, err error)

	breakerFailures int
	probeInterval   time.Duration
	probeTimeout    time.Duration // a probe's PING
	budget          time.Duration // a decision's wait for Redis
	refundBudget    time.Duration // a refund's connect and command
	batch           *batcher

	// The health of Redis: one node for a standalone Redis (or the
	// Sentinel-managed master), one per master on a cluster, made as
	// calls first reach it (see health.go).
	main    *node
	nodesMu sync.RWMutex
	nodes   map[*redis.Client]*node

	closed atomic.Bool
	done   chan struct{} // closed by Close

	stats struct {
		takes, errors, fastFails, trips, recoveries atomic.Uint64
		calls, flushes, refunds, refundErrors       atomic.Uint64
	}
}

// unavailErr is the error Take returns while Redis (or, on a cluster, the
// node a request's keys live on) is down: ErrUnavailable with the error
// that tripped the breaker.
type unavailErr struct {
	node  string // a cluster master's address, or ""
	cause error
}

func (e *unavailErr) Error() string {
	if e.node != "" {
		return ErrUnavailable.Error() + " (node " + e.node + "): " + e.cause.Error()
	}
	return ErrUnavailable.Error() + ": " + e.cause.Error()
}
func (e *unavailErr) Unwrap() []error { return []error{ErrUnavailable, e.cause} }

// Stats are counters of a Store's life, for metrics.
type Stats struct {
	// Up is false while the store considers Redis down.
	Up bool
	// Takes counts Take calls that decided; Errors those that failed, of
	// which FastFails were refused by the breaker without asking Redis.
	Takes, Errors, FastFails uint64
	// Trips counts the times Redis was marked down, Recoveries the times
	// it was marked up again.
	Trips, Recoveries uint64
	// Calls counts script calls sent (refunds included). Flushes counts
	// the writes that sent them: a single call, or a pipeline of the calls
	// of concurrent Takes (see Options.BatchMax); on a standalone Redis,
	// round trips.
	Calls, Flushes uint64
	// Refunds counts refund calls (Redis Cluster only: a request whose
	// slots disagreed); RefundErrors those that failed, leaving the hits
	// taken until their window ends or the bucket refills.
	Refunds, RefundErrors uint64
}

// New returns a Store that keeps its counters in the Redis that client
// talks to: a *redis.Client (standalone, or a failover client through
// Sentinel) or a *redis.ClusterClient, whose type New detects: on a
// cluster, a request's hits are grouped by slot, and each master has a
// breaker of its own. NewClient builds either from a URL.
//
// New does not wait for Redis to answer: a Redis that is down at start
// makes Take fail until it is up (Ping tells, for readiness). The Store
// does not own client: Close stops the store only, and the caller closes
// client afterwards. The client's read timeout is the store's default
// Options.Timeout, which bounds every decision's wait for Redis, so a
// client built elsewhere should set it.
func New(client redis.UniversalClient, o Options) (*Store, error) {
	if client == nil {
		return nil, optErr("the client is nil")
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	dial, read, write := timeouts(client)
	s := &Store{
		client:          client,
		keys:            keyBuilder{prefix: pick(o.KeyPrefix, "", DefaultKeyPrefix)},
		now:             o.Now,
		onState:         o.OnStateChange,
		breakerFailures: pick(o.BreakerFailures, 0, DefaultBreakerFailures),
		probeInterval:   pick(o.ProbeInterval, 0, DefaultProbeInterval),
		probeTimeout:    max(dial, read),
		budget:          pick(o.Timeout, 0, read),
		refundBudget:    dial + write + read,
		done:            make(chan struct{}),
	}
	s.cluster, _ = client.(*redis.ClusterClient)
	if s.cluster == nil {
		s.main = s.newNode(nil, "")
	} else {
		s.nodes = make(map[*redis.Client]*node)
	}
	s.batch = newBatcher(s, pick(o.BatchMax, 0, DefaultBatchMax), pick(o.BatchWindow, 0, DefaultBatchWindow))
	return s, nil
}

// Close stops the probes; Take and Ping then fail with ErrClosed. Calls in
// flight finish. It does not close the client, which is the caller's.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.done)
	for _, n := range s.allNodes() {
		n.b.Close()
	}
	return nil
}

// Stats returns the store's counters so far.
func (s *Store) Stats() Stats {
	up := true
	for _, n := range s.allNodes() {
		up = up && n.b.Up()
	}
	return Stats{
		Up:           up,
		Takes:        s.stats.takes.Load(),
		Errors:       s.stats.errors.Load(),
		FastFails:    s.stats.fastFails.Load(),
		Trips:        s.stats.trips.Load(),
		Recoveries:   s.stats.recoveries.Load(),
		Calls:        s.stats.calls.Load(),
		Flushes:      s.stats.flushes.Load(),
		Refunds:      s.stats.refunds.Load(),
		RefundErrors: s.stats.refundErrors.Load(),
	}
}

// Ping reports whether Redis can decide now: at once ErrUnavailable while
// the breaker has it down, else a PING. On a cluster it pings every
// master and succeeds when one answers: keys on the others are refused by
// their own breakers, and a failover of one master should not take the
// pods whose readiness this is out of service (Health tells per node).
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if s.cluster == nil {
		if err := s.main.gate(); err != nil {
			return err
		}
		err := s.client.Ping(ctx).Err()
		s.main.record(err)
		if err != nil {
			return fmt.Errorf("redisstore: ping: %w", err)
		}
		return nil
	}
	var ok atomic.Bool
	err := s.cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		err := c.Ping(ctx).Err()
		if err == nil {
			ok.Store(true)
		}
		return err
	})
	if ok.Load() {
		return nil
	}
	if err == nil {
		err = errors.New("no master")
	}
	return fmt.Errorf("redisstore: ping: %w", err)
}

// gate fails fast while the store is closed or, for a standalone Redis,
// down. Its errors carry the package prefix already.
func (s *Store) gate() error {
	if s.closed.Load() {
		return ErrClosed
	}
	if s.main != nil {
		return s.main.gate()
	}
	return nil
}

// isOutage reports whether err means Redis cannot serve (so that the next
// request would likely wait and fail too), as opposed to an answer about
// this request (a script's error reply) or a caller that gave up.
func isOutage(err error) bool {
	return !errors.Is(err, lua.ErrReply) && breaker.Outage(err)
}

// Take decides hits as one all-or-nothing batch (see quota.Limiter
// and, for Redis Cluster, docs/algorithms.md).
func (s *Store) Take(ctx context.Context, hits []quota.Hit, out []quota.Decision) error {
	if len(out) != len(hits) {
		return fmt.Errorf("redisstore: take: %d decisions for %d hits", len(out), len(hits))
	}
	if len(hits) == 0 {
		return nil
	}
	if err := s.gate(); err != nil {
		s.stats.errors.Add(1)
		if errors.Is(err, ErrUnavailable) {
			s.stats.fastFails.Add(1)
		}
		return err
	}
	var now int64
	pinned := s.now != nil
	if pinned {
		now = quota.Micros(s.now())
	}
	// The request's script calls, built in a pooled job without
	// allocating slices in the common case.
	p := s.batch.get()
	defer s.batch.release(p)
	// The decision's deadline: queued, sent and answered within the
	// budget, whatever the caller's context says (see batcher).
	p.deadline = time.Now().Add(s.budget)
	var err error
	if s.cluster == nil {
		c := p.single(lua.Take)
		c.node = s.main
		c.args = lua.AppendTime(c.args, now, pinned)
		for i := range hits {
			key, _ := s.keys.build(hits[i].Key, hits[i].TagLen)
			c.keys = append(c.keys, key)
			c.args = lua.AppendHit(c.args, &hits[i])
		}
		err = s.takeOne(ctx, p, out)
	} else {
		err = s.takeCluster(ctx, p, hits, now, pinned, out)
	}
	if err != nil {
		s.stats.errors.Add(1)
		var u *unavailErr
		if errors.As(err, &u) {
			s.stats.fastFails.Add(1)
			return u // already says where it comes from
		}
		return fmt.Errorf("redisstore: take: %w", err)
	}
	s.stats.takes.Add(1)
	return nil
}

// takeOne runs a request that is one script call (p.own) and reads its
// reply into out.
func (s *Store) takeOne(ctx context.Context, p *pending, out []quota.Decision) error {
	if err := s.batch.do(ctx, p); err != nil {
		return err
	}
	c := &p.own
	if c.err != nil {
		return c.err
	}
	_, err := lua.ParseTake(c.cmd.Val(), out)
	return err
}

// takeCluster runs a request on Redis Cluster: one script call if every
// hit lives in one slot, else one per slot (takeSpread).
func (s *Store) takeCluster(ctx context.Context, p *pending, hits []quota.Hit, now int64, pinned bool, out []quota.Decision) error {
	c := p.single(lua.Take)
	c.args = lua.AppendTime(c.args, now, pinned)
	p.slots = p.slots[:0]
	spread := false
	for i := range hits {
		key, slot := s.keys.build(hits[i].Key, hits[i].TagLen)
		c.keys = append(c.keys, key)
		p.slots = append(p.slots, slot)
		spread = spread || slot != p.slots[0]
	}
	if spread {
		return s.takeSpread(ctx, p, hits, now, pinned, out)
	}
	n, err := s.nodeFor(ctx, c.keys[0])
	if err != nil {
		return err
	}
	if err := n.gate(); err != nil {
		return err
	}
	c.node = n
	for i := range hits {
		c.args = lua.AppendHit(c.args, &hits[i])
	}
	return s.takeOne(ctx, p, out)
}

// takeSpread runs the calls of a request whose hits span cluster slots,
// one per slot, sent together, and refunds what the calls took that the
// request as a whole does not: when it is rejected (or a call failed), or,
// for hits counted unless another is over, when a hit of another slot was
// over. Quota hits are sent
// as shadow, so that no slot rejects on its own by quota: whether the
// request is rejected by quota depends on every slot's answers.
func (s *Store) takeSpread(ctx context.Context, p *pending, hits []quota.Hit, now int64, pinned bool, out []quota.Decision) error {
	var calls []*call // in the order of each slot's first hit
	for i := range hits {
		slot := p.slots[i]
		j := 0
		for j < len(calls) && calls[j].slot != slot {
			j++
		}
		if j == len(calls) {
			calls = append(calls, &call{script: lua.Take, slot: slot, args: lua.AppendTime(nil, now, pinned)})
		}
		g := calls[j]
		g.idx = append(g.idx, i)
		g.keys = append(g.keys, p.own.keys[i])
		h := hits[i]
		if h.Quota {
			h.Shadow = true
		}
		g.args = lua.AppendHit(g.args, &h)
	}
	// Every slot's master must be up, or nothing is sent: a request is
	// decided on all its slots or on none.
	for _, g := range calls {
		n, err := s.nodeFor(ctx, g.keys[0])
		if err != nil {
			return err
		}
		if err := n.gate(); err != nil {
			return err
		}
		g.node = n
	}
	p.calls = calls
	if err := s.batch.do(ctx, p); err != nil {
		return err
	}
	var firstErr error
	for _, g := range calls {
		if g.err == nil {
			g.out = make([]quota.Decision, len(g.idx))
			g.now, g.err = lua.ParseTake(g.cmd.Val(), g.out)
		}
		if g.err != nil {
			if firstErr == nil {
				firstErr = g.err
			}
			continue
		}
		for j, i := range g.idx {
			out[i] = g.out[j]
		}
	}
	rejected, allFit := quota.Rejects(hits, out), quota.AllFit(out)
	if firstErr == nil && !rejected && allFit {
		return nil
	}
	// Give back what a slot took that the request as a whole does not take
	// (quota.Taken over every slot's decisions): with the default counting,
	// everything when the request is rejected. When a slot failed, every
	// slot that took is refunded, so that the request consumes nothing.
	var refunds []*call
	for _, g := range calls {
		if g.err != nil {
			continue
		}
		localRejected, localAllFit := g.rejected(hits), quota.AllFit(g.out)
		r := &call{script: lua.Refund, node: g.node, args: lua.AppendTime(nil, g.now, true)}
		for j, i := range g.idx {
			h, d := &hits[i], &g.out[j]
			if !quota.Taken(h, d, localRejected, localAllFit) {
				continue
			}
			if firstErr == nil && quota.Taken(h, d, rejected, allFit) {
				continue
			}
			r.keys = append(r.keys, g.keys[j])
			r.args = lua.AppendHit(r.args, h)
		}
		if len(r.keys) > 0 {
			refunds = append(refunds, r)
		}
	}
	if len(refunds) > 0 {
		s.refund(ctx, refunds)
	}
	return firstErr
}

// rejected reports whether the slot call c, as takeSpread sent it (quota
// hits as shadow), rejected its hits and so took nothing.
func (c *call) rejected(hits []quota.Hit) bool {
	for j, i := range c.idx {
		if h := &hits[i]; !c.out[j].Fits && !h.Shadow && !h.Quota {
			return true
		}
	}
	return false
}

// refund runs refund calls. It runs even if the caller's context is done
// (the hits were taken for a request that was not admitted), with a budget
// of its own: a connect and a command. A call that failed before anything
// was sent (no connection could be had) is tried again, once: that cannot
// refund twice. One that failed otherwise is given up, and its hits stay
// taken until their window ends or the bucket refills (a leak that errs
// towards rejecting; counted in Stats.RefundErrors).
func (s *Store) refund(ctx context.Context, refunds []*call) {
	s.stats.refunds.Add(uint64(len(refunds)))
	s.runCalls(ctx, refunds)
	var again []*call
	for _, r := range refunds {
		switch {
		case r.err != nil && notSent(r.err):
			r.cmd, r.err = nil, nil
			again = append(again, r)
		case r.err != nil:
			s.stats.refundErrors.Add(1)
		}
	}
	if len(again) == 0 {
		return
	}
	s.runCalls(ctx, again)
	for _, r := range again {
		if r.err != nil {
			s.stats.refundErrors.Add(1)
		}
	}
}

// runCalls sends calls through the batcher as one job, bounded by the
// refund budget and not by ctx's end.
func (s *Store) runCalls(ctx context.Context, calls []*call) {
	p := s.batch.get()
	defer s.batch.release(p)
	p.calls = calls
	p.deadline = time.Now().Add(s.refundBudget)
	if err := s.batch.do(context.WithoutCancel(ctx), p); err != nil {
		for _, c := range calls {
			c.err = err
		}
	}
}

// notSent reports whether err means a command never left the client: no
// connection could be dialed or taken from the pool.
func notSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted)
}
