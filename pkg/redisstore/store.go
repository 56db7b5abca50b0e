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
// docs/algorithms.md ("Redis"): each group is atomic, and when a group
// rejects, the groups that admitted are refunded.
//
// When Redis is down, a breaker makes Take and Ping fail at once with
// ErrUnavailable instead of waiting for a timeout per request, while a
// background probe finds out, within about a second, when Redis is back.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

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
	cluster *redis.ClusterClient // nil unless Options.Cluster
	keys    keyBuilder
	now     func() time.Time
	opts    Options

	breakerFailures int64
	probeInterval   time.Duration
	batch           *batcher // nil when batching is off

	failures atomic.Int64               // outage errors in a row
	down     atomic.Pointer[unavailErr] // non-nil while Redis is down
	closed   atomic.Bool
	done     chan struct{} // closed by Close: stops the probe
	probeMu  sync.Mutex    // orders starting a probe with Close
	probes   sync.WaitGroup

	stats struct {
		takes, errors, fastFails, trips, recoveries atomic.Uint64
		calls, flushes, refunds, refundErrors       atomic.Uint64
	}
}

// unavailErr is the error Take returns while Redis is down: ErrUnavailable
// with the error that tripped the breaker.
type unavailErr struct{ cause error }

func (e *unavailErr) Error() string {
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
	// Calls counts script calls sent. Flushes counts the writes that sent
	// them: a single call, or a pipeline of the calls of concurrent Takes
	// (see Options.BatchMax); on a standalone Redis, round trips.
	Calls, Flushes uint64
	// Refunds counts refund calls (Redis Cluster only: a request whose
	// slots disagreed); RefundErrors those that failed, leaving the hits
	// taken until their window ends or the bucket refills.
	Refunds, RefundErrors uint64
}

// New connects to Redis as o describes. It does not wait for Redis to
// answer: a Redis that is down at start makes Take fail until it is up (Ping
// tells, for readiness).
func New(o Options) (*Store, error) {
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultKeyPrefix
	}
	if strings.ContainsAny(o.KeyPrefix, "{}") {
		return nil, optErr("KeyPrefix %q may not contain '{' or '}': they would change the Redis Cluster hash tag", o.KeyPrefix)
	}
	switch {
	case o.PoolSize < 0:
		return nil, optErr("PoolSize %d is negative", o.PoolSize)
	case o.DialTimeout < 0, o.ReadTimeout < 0, o.WriteTimeout < 0:
		return nil, optErr("timeouts must not be negative")
	case o.BreakerFailures < 0:
		return nil, optErr("BreakerFailures %d is negative", o.BreakerFailures)
	case o.ProbeInterval < 0:
		return nil, optErr("ProbeInterval %v is negative", o.ProbeInterval)
	case o.MaxRetries < -1:
		return nil, optErr("MaxRetries %d: want -1 (none) or more", o.MaxRetries)
	case o.BatchMax < 0:
		return nil, optErr("BatchMax %d is negative", o.BatchMax)
	case o.BatchWindow < 0:
		return nil, optErr("BatchWindow %v is negative", o.BatchWindow)
	}
	c, err := newClient(&o)
	if err != nil {
		return nil, err
	}
	s := &Store{
		client:          c,
		keys:            keyBuilder{prefix: o.KeyPrefix},
		now:             o.Now,
		opts:            o,
		breakerFailures: int64(pick(o.BreakerFailures, 0, DefaultBreakerFailures)),
		probeInterval:   pick(o.ProbeInterval, 0, DefaultProbeInterval),
		done:            make(chan struct{}),
	}
	s.cluster, _ = c.(*redis.ClusterClient)
	if n := pick(o.BatchMax, 0, DefaultBatchMax); n > 1 {
		s.batch = newBatcher(s, n, o.BatchWindow)
	}
	return s, nil
}

// Client returns the go-redis client the store uses, e.g. to share its
// connections; closing it is Close's job.
func (s *Store) Client() redis.UniversalClient { return s.client }

// Close stops the probe and closes the connections.
func (s *Store) Close() error {
	s.probeMu.Lock()
	already := s.closed.Swap(true)
	s.probeMu.Unlock()
	if already {
		return nil
	}
	close(s.done)
	s.probes.Wait()
	if err := s.client.Close(); err != nil {
		return fmt.Errorf("redisstore: close: %w", err)
	}
	return nil
}

// Stats returns the store's counters so far.
func (s *Store) Stats() Stats {
	return Stats{
		Up:           s.down.Load() == nil,
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
// the breaker has it down, else a PING (to every master on a cluster).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.gate(); err != nil {
		return err
	}
	err := s.ping(ctx)
	s.record(err)
	if err != nil {
		return fmt.Errorf("redisstore: ping: %w", err)
	}
	return nil
}

func (s *Store) ping(ctx context.Context) error {
	if s.cluster != nil {
		return s.cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return c.Ping(ctx).Err()
		})
	}
	return s.client.Ping(ctx).Err()
}

// gate fails fast while Redis is down or the store is closed.
func (s *Store) gate() error {
	if s.closed.Load() {
		return ErrClosed
	}
	if d := s.down.Load(); d != nil {
		return d
	}
	return nil
}

// record feeds the breaker with the outcome of one exchange with Redis.
func (s *Store) record(err error) {
	if err == nil {
		// Load first: a store that is healthy never writes the shared
		// counter, so concurrent Takes do not fight over its cache line.
		if s.failures.Load() != 0 {
			s.failures.Store(0)
		}
		return
	}
	if !isOutage(err) || s.closed.Load() {
		return
	}
	if s.failures.Add(1) < s.breakerFailures {
		return
	}
	if !s.down.CompareAndSwap(nil, &unavailErr{cause: err}) {
		return
	}
	s.stats.trips.Add(1)
	if f := s.opts.OnStateChange; f != nil {
		f(false, err)
	}
	s.probeMu.Lock()
	defer s.probeMu.Unlock()
	if s.closed.Load() {
		return
	}
	s.probes.Add(1)
	go s.probe()
}

// probe pings Redis every probeInterval until it answers, then marks it up.
func (s *Store) probe() {
	defer s.probes.Done()
	t := time.NewTicker(s.probeInterval)
	defer t.Stop()
	timeout := max(pick(s.opts.DialTimeout, 0, DefaultDialTimeout), pick(s.opts.ReadTimeout, 0, DefaultReadTimeout))
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := s.ping(ctx)
		cancel()
		if err == nil {
			s.failures.Store(0)
			s.down.Store(nil)
			s.stats.recoveries.Add(1)
			if f := s.opts.OnStateChange; f != nil {
				f(true, nil)
			}
			return
		}
	}
}

// isOutage reports whether err means Redis cannot serve (so that the next
// request would likely wait and fail too), as opposed to an answer about
// this request or a caller that gave up.
func isOutage(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, lua.ErrReply) {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		// Redis answered: it is up, unless the answer says it cannot serve.
		msg := rerr.Error()
		for _, p := range []string{"LOADING", "MASTERDOWN", "CLUSTERDOWN"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	return true
}

// call is one script call: the hits of one slot (all of them on a
// standalone Redis), by their index in the request.
type call struct {
	slot uint16
	idx  []int
	keys []string
	args []any
	out  []quota.Decision
	now  int64 // the time the script decided at
	err  error
	cmd  *redis.Cmd
}

func (c *call) wrote(hits []quota.Hit) bool {
	if c.err != nil {
		return false
	}
	rejected := false
	for j, i := range c.idx {
		if !c.out[j].Fits && !hits[i].Shadow {
			rejected = true
		}
	}
	return !rejected
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
		return fmt.Errorf("redisstore: take: %w", err)
	}
	var now int64
	pinned := s.now != nil
	if pinned {
		now = quota.Micros(s.now())
	}
	var err error
	if s.batch != nil && s.cluster == nil {
		// The common case, without allocating: one call, built in place.
		p := s.batch.get()
		s.fill(p.c, hits, now, pinned)
		err = s.batched(ctx, p, out)
		s.batch.release(p)
		return s.finish(err)
	}
	calls := s.split(hits, now, pinned)
	switch {
	case len(calls) == 1 && s.batch != nil:
		p := s.batch.get()
		p.c = &calls[0]
		err = s.batched(ctx, p, out)
		s.batch.release(p)
	case len(calls) == 1:
		err = s.takeOne(ctx, &calls[0], out)
		s.record(err)
	default:
		err = s.takeMany(ctx, hits, calls, out)
		s.record(err)
	}
	return s.finish(err)
}

// batched runs p's call through the batcher. The batch's flush feeds the
// breaker.
func (s *Store) batched(ctx context.Context, p *pending, out []quota.Decision) error {
	// A batch may outlive this caller's context (see batcher): a call
	// whose context is already done is not sent at all.
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.batch.do(ctx, p, out)
}

// finish counts the outcome of a Take and wraps its error.
func (s *Store) finish(err error) error {
	if err != nil {
		s.stats.errors.Add(1)
		return fmt.Errorf("redisstore: take: %w", err)
	}
	s.stats.takes.Add(1)
	return nil
}

// split builds the script calls of a request: one on a standalone Redis,
// one per slot on a cluster, in the order of each slot's first hit.
func (s *Store) split(hits []quota.Hit, now int64, pinned bool) []call {
	if s.cluster == nil {
		c := call{
			keys: make([]string, 0, len(hits)),
			args: make([]any, 0, 1+lua.ArgsPerHit*len(hits)),
		}
		s.fill(&c, hits, now, pinned)
		return []call{c}
	}
	var calls []call
	for i := range hits {
		key, slot := s.keys.build(hits[i].Key, hits[i].TagLen)
		j := 0
		for j < len(calls) && calls[j].slot != slot {
			j++
		}
		if j == len(calls) {
			calls = append(calls, call{slot: slot, args: lua.AppendTime(nil, now, pinned)})
		}
		c := &calls[j]
		c.idx = append(c.idx, i)
		c.keys = append(c.keys, key)
		c.args = lua.AppendHit(c.args, &hits[i])
	}
	return calls
}

// fill appends to c's (empty) keys and args the call of all of hits.
func (s *Store) fill(c *call, hits []quota.Hit, now int64, pinned bool) {
	c.args = lua.AppendTime(c.args, now, pinned)
	for i := range hits {
		key, _ := s.keys.build(hits[i].Key, hits[i].TagLen)
		c.keys = append(c.keys, key)
		c.args = lua.AppendHit(c.args, &hits[i])
	}
}

// takeOne runs a request that is one script call: EVALSHA, or EVAL if the
// node lacks the script.
func (s *Store) takeOne(ctx context.Context, c *call, out []quota.Decision) error {
	s.stats.calls.Add(1)
	s.stats.flushes.Add(1)
	reply, err := lua.Take.Run(ctx, s.client, c.keys, c.args...).Result()
	if err != nil {
		return err
	}
	if c.idx == nil {
		_, err = lua.ParseTake(reply, out)
		return err
	}
	c.out = make([]quota.Decision, len(c.idx))
	if _, err = lua.ParseTake(reply, c.out); err != nil {
		return err
	}
	for j, i := range c.idx {
		out[i] = c.out[j]
	}
	return nil
}

// takeMany runs the calls of a request whose hits span cluster slots, in
// one pipeline, and refunds the calls that took when another rejected.
func (s *Store) takeMany(ctx context.Context, hits []quota.Hit, calls []call, out []quota.Decision) error {
	s.runPipeline(ctx, lua.Take, calls)
	var firstErr error
	for k := range calls {
		c := &calls[k]
		if c.err == nil {
			c.out = make([]quota.Decision, len(c.idx))
			c.now, c.err = lua.ParseTake(c.cmd.Val(), c.out)
		}
		if c.err != nil {
			if firstErr == nil {
				firstErr = c.err
			}
			continue
		}
		for j, i := range c.idx {
			out[i] = c.out[j]
		}
	}
	if firstErr == nil && !quota.Rejects(hits, out) {
		return nil
	}
	// Some slot rejected the request (or failed): give back what the
	// others took, so the request consumes nothing.
	var refunds []call
	for k := range calls {
		c := &calls[k]
		if !c.wrote(hits) {
			continue
		}
		r := call{args: lua.AppendTime(nil, c.now, true)}
		for j, i := range c.idx {
			if c.out[j].Fits && hits[i].N > 0 {
				r.keys = append(r.keys, c.keys[j])
				r.args = lua.AppendHit(r.args, &hits[i])
			}
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

// refund runs refund calls. It runs even if the caller's context is done
// (the hits were taken for a request that was not admitted), with a budget
// of its own: a connect and a command. A call that failed before anything
// was sent (no connection could be had) is tried again, once: that cannot
// refund twice. One that failed otherwise is given up, and its hits stay
// taken until their window ends or the bucket refills (a leak that errs
// towards rejecting; counted in Stats.RefundErrors).
func (s *Store) refund(ctx context.Context, refunds []call) {
	budget := pick(s.opts.DialTimeout, 0, DefaultDialTimeout) +
		pick(s.opts.WriteTimeout, 0, DefaultWriteTimeout) +
		pick(s.opts.ReadTimeout, 0, DefaultReadTimeout)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), budget)
	defer cancel()
	s.stats.refunds.Add(uint64(len(refunds)))
	s.runPipeline(rctx, lua.Refund, refunds)
	var again []call
	for _, r := range refunds {
		if r.err != nil && notSent(r.err) {
			again = append(again, r)
		} else if r.err != nil {
			s.stats.refundErrors.Add(1)
		}
	}
	if len(again) == 0 {
		return
	}
	rctx2, cancel2 := context.WithTimeout(context.WithoutCancel(ctx), budget)
	defer cancel2()
	s.runPipeline(rctx2, lua.Refund, again)
	for _, r := range again {
		if r.err != nil {
			s.stats.refundErrors.Add(1)
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

// runPipeline sends one script call per element of calls in one pipeline
// (go-redis sends each node's share in parallel), retrying with EVAL the
// calls whose node lacked the script.
func (s *Store) runPipeline(ctx context.Context, script *redis.Script, calls []call) {
	s.stats.calls.Add(uint64(len(calls)))
	s.stats.flushes.Add(1)
	pipe := s.client.Pipeline()
	for k := range calls {
		calls[k].cmd = script.EvalSha(ctx, pipe, calls[k].keys, calls[k].args...)
	}
	// Exec's error is also each command's; they are read one by one.
	_, _ = pipe.Exec(ctx)
	var retry redis.Pipeliner
	for k := range calls {
		c := &calls[k]
		c.err = c.cmd.Err()
		if c.err != nil && isNoScript(c.err) {
			if retry == nil {
				retry = s.client.Pipeline()
			}
			c.cmd = script.Eval(ctx, retry, c.keys, c.args...)
		}
	}
	if retry == nil {
		return
	}
	s.stats.flushes.Add(1)
	_, _ = retry.Exec(ctx)
	for k := range calls {
		calls[k].err = calls[k].cmd.Err()
	}
}
