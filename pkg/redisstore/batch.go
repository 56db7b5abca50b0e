package redisstore

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/pkg/lua"
	"github.com/floodgate/floodgate/pkg/quota"
)

// batcher coalesces the script calls of concurrent Takes into pipelines:
// several EVALSHA written to Redis at once and their replies read in one
// loop, so that syscalls and Redis reads per decision fall as load rises.
//
// It batches "naturally": a call that finds no other call in flight, or
// just one, is sent at once, alone, so requests at low load wait for
// nothing. Calls that arrive while more are in flight queue up, and the
// queue is flushed as one pipeline as soon as a flush ends, or when it holds
// max calls, or when its first call has waited window (if window > 0),
// whichever comes first. The queue thus grows only while Redis is busy.
//
// There is no goroutine of its own: the call that triggers a flush (the
// first to arrive when none is in flight, the one that fills the queue, the
// queue's head when its window elapses, or the head that a finishing flush
// hands the queue to) runs it in its own goroutine, for a batch it belongs
// to, then wakes the others. A flush of several calls does not heed any
// caller's context (one caller's would otherwise fail the others' calls):
// the store's read and write timeouts bound it. A caller whose context
// ends while its call is still queued leaves the queue (nothing was sent);
// once its call is in a batch, it waits for the batch's answer.
//
// On Redis Cluster the pipeline goes to go-redis's ClusterClient, which
// splits it by node and writes each node's share in parallel, following
// MOVED and ASK: every node still gets one write per flush.
type batcher struct {
	s      *Store
	max    int
	window time.Duration // 0: a queued call waits for a flush to end

	mu       sync.Mutex
	inflight int        // calls in the flushes running
	queue    []*pending // calls waiting; non-empty only while inflight > 1
	gen      uint64     // bumped each time the queue is taken

	pool sync.Pool // of *pending
}

// pending is one Take's script call on its way through the batcher. It is
// pooled with its buffers, so that a Take on a standalone Redis builds its
// call without allocating slices.
type pending struct {
	c   *call
	own call // c's storage for a call built in place (see get)
	out []quota.Decision
	err error
	one [1]*pending // the batch of a call that goes alone
	gen uint64      // b.gen when queued: the queue still holds it while equal
	// done receives nil when the answer is in out and err, or a batch
	// (the queue, taken for this call to flush) when it is to lead one.
	done  chan []*pending
	timer *time.Timer
}

func newBatcher(s *Store, max int, window time.Duration) *batcher {
	b := &batcher{s: s, max: max, window: window}
	b.pool.New = func() any { return &pending{done: make(chan []*pending, 1)} }
	return b
}

// get returns a pending whose c is its own call, emptied for reuse; put it
// back with release once done.
func (b *batcher) get() *pending {
	p := b.pool.Get().(*pending)
	p.own.keys, p.own.args = p.own.keys[:0], p.own.args[:0]
	p.c = &p.own
	return p
}

// release returns p to the pool; nothing refers to it any more.
func (b *batcher) release(p *pending) {
	p.c, p.out, p.err = nil, nil, nil
	p.own.cmd = nil
	b.pool.Put(p)
}

// do runs p's call, whose hits are decided into out, as part of a
// pipeline. It returns the call's own error; the breaker has already heard
// of the flush.
func (b *batcher) do(ctx context.Context, p *pending, out []quota.Decision) error {
	p.out, p.err = out, nil
	b.mu.Lock()
	if b.inflight <= 1 {
		// Nothing in flight, or a lone call: go now, alone. (Were a
		// second call to wait for a first alone, two concurrent callers
		// would take turns, each waiting for the other's round trip.)
		b.inflight++
		b.mu.Unlock()
		p.one[0] = p
		b.flush(ctx, p, p.one[:])
		return p.err
	}
	b.queue = append(b.queue, p)
	p.gen = b.gen
	if len(b.queue) >= b.max {
		batch := b.takeLocked()
		b.mu.Unlock()
		b.flush(ctx, p, batch)
		return p.err
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
				b.flush(ctx, p, batch)
			}
			return p.err
		case <-timeout:
			timeout = nil
			b.mu.Lock()
			if p.gen == b.gen {
				// Still queued, so still the head: the window is up.
				batch := b.takeLocked()
				b.mu.Unlock()
				b.flush(ctx, p, batch)
				return p.err
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

// flush sends batch (which holds self) as one pipeline, hands the queue
// that built up meanwhile to its head, and wakes the batch's other calls.
func (b *batcher) flush(ctx context.Context, self *pending, batch []*pending) {
	s := b.s
	s.stats.calls.Add(uint64(len(batch)))
	s.stats.flushes.Add(1)
	if len(batch) > 1 || batch[0] != self {
		// The flush serves other callers: the context of none may cut it
		// short. The read and write timeouts bound it. (A call alone is
		// bound by its own context too, as without batching.)
		ctx = context.Background()
	}
	if len(batch) == 1 {
		// One call: a plain EVALSHA (EVAL on NOSCRIPT), without the
		// pipeline's bookkeeping.
		c := self.c
		reply, err := lua.Take.Run(ctx, s.client, c.keys, c.args...).Result()
		if err == nil {
			_, err = lua.ParseTake(reply, self.out)
		}
		self.err = err
		s.record(err)
	} else {
		s.runBatch(ctx, batch)
	}

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

// runBatch sends the calls of batch in one pipeline and reads each answer
// into its call's decisions, retrying with EVAL those whose node lacked the
// script. The breaker hears once: of the first outage error, if any.
func (s *Store) runBatch(ctx context.Context, batch []*pending) {
	pipe := s.client.Pipeline()
	for _, p := range batch {
		p.c.cmd = lua.Take.EvalSha(ctx, pipe, p.c.keys, p.c.args...)
	}
	// Exec's error is also each command's; they are read one by one.
	_, _ = pipe.Exec(ctx)
	retry := false
	for _, p := range batch {
		if err := p.c.cmd.Err(); err != nil && isNoScript(err) {
			if !retry {
				pipe = s.client.Pipeline()
				retry = true
			}
			p.c.cmd = lua.Take.Eval(ctx, pipe, p.c.keys, p.c.args...)
		}
	}
	if retry {
		s.stats.flushes.Add(1)
		_, _ = pipe.Exec(ctx)
	}
	// What the breaker hears: an outage if any call saw one; else that
	// Redis answered, if any call went through; else (every call refused,
	// e.g. WRONGPASS) nothing.
	var outage, firstErr error
	ok := false
	for _, p := range batch {
		err := p.c.cmd.Err()
		if err == nil {
			_, err = lua.ParseTake(p.c.cmd.Val(), p.out)
		}
		p.err = err
		switch {
		case err == nil:
			ok = true
		case outage == nil && isOutage(err):
			outage = err
		case firstErr == nil:
			firstErr = err
		}
	}
	switch {
	case outage != nil:
		s.record(outage)
	case ok:
		s.record(nil)
	default:
		s.record(firstErr)
	}
}

// isNoScript reports whether err is Redis saying it lacks the script.
func isNoScript(err error) bool { return redis.HasErrorPrefix(err, "NOSCRIPT") }
