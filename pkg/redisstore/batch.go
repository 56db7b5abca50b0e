package redisstore

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/pkg/quota"
)

// call is one script call (take.lua or refund.lua) and, once sent, its
// command and error.
type call struct {
	script *redis.Script
	keys   []string
	args   []any
	cmd    *redis.Cmd
	err    error
	node   *node // where it goes: the node whose breaker hears of it

	// For the slot calls of a request spread over cluster slots: the slot,
	// the hits of the request it decides (by index), their decisions and
	// the time the script decided at.
	slot uint16
	idx  []int
	out  []quota.Decision
	now  int64
}

// batcher is the one way script calls reach Redis. It sends the calls of
// jobs (a job is one Take's calls, or one refund's) and coalesces the jobs
// of concurrent callers into pipelines: several EVALSHA written to Redis
// at once and their replies read in one loop, so that syscalls and Redis
// reads per decision fall as load rises.
//
// It batches "naturally": a job that finds no other job in flight, or
// just one, is sent at once, alone, so requests at low load wait for
// nothing. Jobs that arrive while more are in flight queue up, and the
// queue is flushed as one pipeline as soon as a flush ends, or when it holds
// max jobs, or when its first job has waited window (if window > 0),
// whichever comes first. The queue thus grows only while Redis is busy.
// With max 1, every job goes alone.
//
// There is no goroutine of its own: the job that triggers a flush (the
// first to arrive when none is in flight, the one that fills the queue, the
// queue's head when its window elapses, or the head that a finishing flush
// hands the queue to) runs it in its own goroutine, for a batch it belongs
// to, then wakes the others. A flush heeds no caller's context (one
// caller's would otherwise fail the others' calls, and a caller that gives
// up early, as Envoy does after its timeout, would leave the breaker
// blind to a Redis that stalls): it is bound by the earliest deadline of
// its jobs (each job's start plus the store's budget), so that no job
// waits longer than its budget, queue included. A caller whose context
// ends while its job is still queued leaves the queue (nothing was sent);
// once its job is in a batch, it waits for the batch's answer.
//
// On Redis Cluster the pipeline goes to go-redis's ClusterClient, which
// splits it by node and writes each node's share in parallel, following
// MOVED and ASK: every node still gets one write per flush.
type batcher struct {
	s      *Store
	max    int
	window time.Duration // 0: a queued job waits for a flush to end

	mu       sync.Mutex
	inflight int        // jobs in the flushes running
	queue    []*pending // jobs waiting; non-empty only while inflight > 1
	gen      uint64     // bumped each time the queue is taken

	pool sync.Pool // of *pending
}

// pending is one job on its way through the batcher: its calls and the
// bookkeeping of its wait. It is pooled with its buffers, so that a Take
// builds its call without allocating slices.
type pending struct {
	calls  []*call
	own    call     // the storage of a job of one call (see single)
	ownPtr [1]*call // calls of such a job
	slots  []uint16 // scratch: the slot of each hit of a cluster request
	gather []*call  // scratch: the calls of a batch this job flushes
	one    [1]*pending
	gen    uint64 // b.gen when queued: the queue still holds it while equal
	// deadline is when the job's wait for Redis ends, queue included:
	// its Take's start plus the store's budget.
	deadline time.Time
	dctx     deadlineCtx // the context of a flush this job leads
	// done receives nil when the job's calls are answered, or a batch
	// (the queue, taken for this job to flush) when it is to lead one.
	done  chan []*pending
	timer *time.Timer
}

func newBatcher(s *Store, max int, window time.Duration) *batcher {
	b := &batcher{s: s, max: max, window: window}
	b.pool.New = func() any { return &pending{done: make(chan []*pending, 1)} }
	return b
}

// get returns an empty job; put it back with release once done.
func (b *batcher) get() *pending { return b.pool.Get().(*pending) }

// single makes p a job of one call, its own, emptied for reuse, and
// returns that call.
func (p *pending) single(script *redis.Script) *call {
	c := &p.own
	c.script = script
	c.keys, c.args = c.keys[:0], c.args[:0]
	c.cmd, c.err = nil, nil
	p.ownPtr[0] = c
	p.calls = p.ownPtr[:]
	return c
}

// release returns p to the pool; nothing refers to it any more.
func (b *batcher) release(p *pending) {
	p.calls = nil
	p.own.cmd, p.own.err = nil, nil
	clear(p.gather)
	p.gather = p.gather[:0]
	b.pool.Put(p)
}

// do sends p's calls, as part of a pipeline when others are in flight,
// and returns once each call has its cmd and err. It returns an error of
// its own only when nothing was sent: ctx ended first.
func (b *batcher) do(ctx context.Context, p *pending) error {
	// A batch may outlive this caller's context (see batcher): a job
	// whose context is already done is not sent at all.
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	if b.inflight <= 1 || b.max == 1 {
		// Nothing in flight, or a lone job, or batching off: go now,
		// alone. (Were a second job to wait for a first alone, two
		// concurrent callers would take turns, each waiting for the
		// other's round trip.)
		b.inflight++
		b.mu.Unlock()
		p.one[0] = p
		b.flush(p, p.one[:])
		return nil
	}
	b.queue = append(b.queue, p)
	p.gen = b.gen
	if len(b.queue) >= b.max {
		batch := b.takeLocked()
		b.mu.Unlock()
		b.flush(p, batch)
		return nil
	}
	head := len(b.queue) == 1
	b.mu.Unlock()

	var timeout <-chan time.Time
	if head && b.window > 0 {
		if p.timer == nil {
			p.timer = time.NewTimer(b.window)
		} else {
			p.timer.Reset(b.window)
		}
		defer p.timer.Stop()
		timeout = p.timer.C
	}
	cancelled := ctx.Done()
	for {
		select {
		case batch := <-p.done:
			if batch != nil {
				b.flush(p, batch)
			}
			return nil
		case <-timeout:
			timeout = nil
			b.mu.Lock()
			if p.gen == b.gen {
				// Still queued, so still the head: the window is up.
				batch := b.takeLocked()
				b.mu.Unlock()
				b.flush(p, batch)
				return nil
			}
			b.mu.Unlock()
		case <-cancelled:
			cancelled = nil
			b.mu.Lock()
			if p.gen == b.gen {
				// Not sent: leave the queue, which still makes progress
				// through the flush in flight.
				for i, q := range b.queue {
					if q == p {
						b.queue = append(b.queue[:i], b.queue[i+1:]...)
						break
					}
				}
				b.mu.Unlock()
				return ctx.Err()
			}
			// Already part of a batch: its answer decides.
			b.mu.Unlock()
		}
	}
}

// takeLocked takes the queue as a batch to flush. b.mu must be held.
func (b *batcher) takeLocked() []*pending {
	batch := b.queue
	b.queue = make([]*pending, 0, b.max)
	b.gen++
	b.inflight += len(batch)
	return batch
}

// flush sends the calls of batch (which holds self) as one write, hands
// the queue that built up meanwhile to its head, and wakes the batch's
// other jobs.
func (b *batcher) flush(self *pending, batch []*pending) {
	calls := self.calls
	deadline := self.deadline
	if len(batch) > 1 || batch[0] != self {
		calls = self.gather[:0]
		for _, q := range batch {
			calls = append(calls, q.calls...)
			if q.deadline.Before(deadline) {
				deadline = q.deadline
			}
		}
		self.gather = calls
	}
	self.dctx.d = deadline
	b.s.send(&self.dctx, calls)

	b.mu.Lock()
	b.inflight -= len(batch)
	var next []*pending
	if len(b.queue) > 0 {
		next = b.takeLocked()
	}
	b.mu.Unlock()
	if next != nil {
		next[0].done <- next
	}
	for _, q := range batch {
		if q != self {
			q.done <- nil
		}
	}
}

// send writes calls to Redis, in one pipeline when there are several, and
// sets each call's cmd and err: EVALSHA first, then, for the calls whose
// node lacks the script (after a restart or SCRIPT FLUSH), EVAL in a
// second write. Every script call of the store goes through here. A call
// whose node went down while it was queued is not sent: it fails with the
// node's ErrUnavailable. Each node's breaker hears once per send: of the
// first outage error of its calls, if any; else that it answered, if any
// of its calls went through; else (every call refused, e.g. WRONGPASS) of
// the first error.
func (s *Store) send(ctx context.Context, calls []*call) {
	live := calls
	for _, c := range calls {
		if c.node.gate() != nil {
			live = nil
			break
		}
	}
	if live == nil {
		// Rare: a node went down while these calls waited.
		for _, c := range calls {
			if err := c.node.gate(); err != nil {
				c.cmd, c.err = nil, err
				continue
			}
			live = append(live, c)
		}
	}
	if len(live) > 0 {
		s.exec(ctx, live)
	}
	s.judge(live)
}

// exec sends calls, none of them refused by a breaker.
func (s *Store) exec(ctx context.Context, calls []*call) {
	s.stats.calls.Add(uint64(len(calls)))
	s.stats.flushes.Add(1)
	if len(calls) == 1 {
		// One call: a plain EVALSHA, without the pipeline's bookkeeping.
		c := calls[0]
		c.cmd = c.script.EvalSha(ctx, s.client, c.keys, c.args...)
		if isNoScript(c.cmd.Err()) {
			s.stats.flushes.Add(1)
			c.cmd = c.script.Eval(ctx, s.client, c.keys, c.args...)
		}
		c.err = c.cmd.Err()
		return
	}
	pipe := s.client.Pipeline()
	for _, c := range calls {
		c.cmd = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	// Exec's error is also each command's; they are read one by one.
	_, _ = pipe.Exec(ctx)
	var retry redis.Pipeliner
	for _, c := range calls {
		if isNoScript(c.cmd.Err()) {
			if retry == nil {
				retry = s.client.Pipeline()
			}
			c.cmd = c.script.Eval(ctx, retry, c.keys, c.args...)
		}
	}
	if retry != nil {
		s.stats.flushes.Add(1)
		_, _ = retry.Exec(ctx)
	}
	for _, c := range calls {
		c.err = c.cmd.Err()
	}
}

// judge tells each node's breaker how its calls went (see send).
func (s *Store) judge(calls []*call) {
	// Most sends go to one node (always on a standalone Redis): judge
	// them without bookkeeping.
	one := true
	for _, c := range calls {
		if c.node != calls[0].node {
			one = false
			break
		}
	}
	if one {
		if len(calls) > 0 {
			calls[0].node.record(verdict(calls))
		}
		return
	}
	var seen [8]*node
	done := seen[:0]
next:
	for _, c := range calls {
		for _, n := range done {
			if n == c.node {
				continue next
			}
		}
		var mine []*call
		for _, d := range calls {
			if d.node == c.node {
				mine = append(mine, d)
			}
		}
		c.node.record(verdict(mine))
		done = append(done, c.node)
	}
}

// verdict is the one outcome a breaker hears of calls to one node: the
// first outage error, else nil if any call was answered, else the first
// error.
func verdict(calls []*call) error {
	var firstErr error
	ok := false
	for _, c := range calls {
		switch err := c.err; {
		case err == nil:
			ok = true
		case isOutage(err):
			return err
		case firstErr == nil:
			firstErr = err
		}
	}
	if ok {
		return nil
	}
	return firstErr
}

// isNoScript reports whether err is Redis saying it lacks the script
// (raw, or as go-redis's ErrNoScript).
func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}

// deadlineCtx is the context of a flush: a deadline, and nothing of any
// caller's (neither its cancellation nor its values). Unlike
// context.WithDeadline it needs no timer and no allocation: Done is nil,
// and the deadline is enforced by what go-redis does with Deadline (socket
// deadlines, dial timeouts) and by Err. A wait that only Done could end (a
// free connection from a full pool) is bounded by the pool timeout, which
// NewClient sets to the read timeout.
type deadlineCtx struct{ d time.Time }

func (c *deadlineCtx) Deadline() (time.Time, bool) { return c.d, true }
func (c *deadlineCtx) Done() <-chan struct{}       { return nil }
func (c *deadlineCtx) Value(any) any               { return nil }
func (c *deadlineCtx) Err() error {
	if time.Now().Before(c.d) {
		return nil
	}
	return context.DeadlineExceeded
}
