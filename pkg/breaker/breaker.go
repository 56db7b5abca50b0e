// Package breaker is the circuit breaker of Floodgate's remote backends
// (the Redis limiter, per node on a cluster, and the response cache's
// store): after a number of outage errors in a row it opens, and while it
// is open the callers fail at once with the error that opened it instead
// of each waiting for a timeout; a probe, run every interval in a
// goroutine of its own, closes it again as soon as the backend answers.
//
// What counts as an outage is the caller's to say (Record's outage
// argument): a network error or a timeout is one, an answer about one
// request (a script error, a missing key) is not, and neither is a caller
// that gave up.
//
// Allow and Record are the request path: a closed breaker costs an atomic
// load on each, and a healthy stream of successes never writes shared
// memory.
package breaker

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrOpen is wrapped by the error Allow returns while the breaker is open.
var ErrOpen = errors.New("breaker open")

// ErrGone, returned by a Probe, says the backend the breaker guards is no
// longer used (a cluster node that lost its slots): the breaker closes and
// its probe stops, as if the backend had answered.
var ErrGone = errors.New("breaker: backend gone")

// Options configure a Breaker. Zero fields take the defaults.
type Options struct {
	// Name says which backend (a node's address), for Open errors.
	Name string
	// Failures is how many outage errors in a row open the breaker;
	// default 3.
	Failures int
	// Interval is how often the probe runs while the breaker is open;
	// default 250ms.
	Interval time.Duration
	// Timeout bounds one probe; default 1s.
	Timeout time.Duration
	// Probe checks whether the backend answers again (say a PING). Without
	// one, the breaker is half-open every Interval instead: Allow lets one
	// call through as a trial, whose Record closes the breaker or keeps it
	// open, and no goroutine runs.
	Probe func(ctx context.Context) error
	// OnChange, when set, is told each time the breaker opens (up false,
	// with the error that opened it) and closes again.
	OnChange func(up bool, err error)
}

// Breaker guards one backend. It is safe for concurrent use. Close stops
// its probe.
type Breaker struct {
	name      string
	threshold int64
	interval  time.Duration
	timeout   time.Duration
	probe     func(context.Context) error
	onChange  func(bool, error)

	failures  atomic.Int64
	open      atomic.Pointer[OpenError]
	nextTrial atomic.Int64 // without a probe: unix nanoseconds of the next trial
	since     atomic.Int64 // unix nanoseconds of the last change (0: never)
	lastErr   atomic.Pointer[string]
	opens     atomic.Uint64

	mu     sync.Mutex // orders starting a probe with Close
	closed bool
	done   chan struct{}
	probes sync.WaitGroup
}

// OpenError is the error of Allow while the breaker is open: ErrOpen,
// the backend's name and the error that opened it.
type OpenError struct {
	Name  string
	Cause error
}

func (e *OpenError) Error() string {
	s := "backend unavailable"
	if e.Name != "" {
		s += " (" + e.Name + ")"
	}
	return s + ": " + e.Cause.Error()
}

// Unwrap gives ErrOpen and the cause.
func (e *OpenError) Unwrap() []error { return []error{ErrOpen, e.Cause} }

// New returns a closed breaker.
func New(o Options) *Breaker {
	b := &Breaker{
		name:      o.Name,
		threshold: int64(o.Failures),
		interval:  o.Interval,
		timeout:   o.Timeout,
		probe:     o.Probe,
		onChange:  o.OnChange,
		done:      make(chan struct{}),
	}
	if b.threshold <= 0 {
		b.threshold = 3
	}
	if b.interval <= 0 {
		b.interval = 250 * time.Millisecond
	}
	if b.timeout <= 0 {
		b.timeout = time.Second
	}
	return b
}

// Allow returns nil while the breaker is closed, else its *OpenError
// (but for a trial call, every Interval, when there is no Probe).
func (b *Breaker) Allow() error {
	e := b.open.Load()
	if e == nil {
		return nil
	}
	if b.probe == nil {
		now := time.Now().UnixNano()
		if next := b.nextTrial.Load(); now >= next && b.nextTrial.CompareAndSwap(next, now+int64(b.interval)) {
			return nil
		}
	}
	return e
}

// Up reports whether the breaker is closed.
func (b *Breaker) Up() bool { return b.open.Load() == nil }

// State describes a breaker for status pages.
type State struct {
	Name string
	Up   bool
	// Since is when it last opened or closed (zero: never changed).
	Since time.Time
	// LastError is the error that last opened it ("" if it never opened).
	LastError string
	// Opens counts the times it opened.
	Opens uint64
}

// State returns the breaker's state now.
func (b *Breaker) State() State {
	s := State{Name: b.name, Up: b.Up(), Opens: b.opens.Load()}
	if ns := b.since.Load(); ns != 0 {
		s.Since = time.Unix(0, ns)
	}
	if p := b.lastErr.Load(); p != nil {
		s.LastError = *p
	}
	return s
}

// Record feeds the breaker one exchange's outcome: err nil for an answer,
// else whether err is an outage. Errors that are not outages leave the
// count of failures in a row alone.
func (b *Breaker) Record(err error, outage bool) {
	if err == nil {
		// Load first: a healthy backend never writes the shared counter.
		if b.failures.Load() != 0 {
			b.failures.Store(0)
		}
		if b.probe == nil && b.open.Load() != nil {
			b.reset() // a trial went through
		}
		return
	}
	if !outage {
		return
	}
	if b.failures.Add(1) < b.threshold {
		return
	}
	b.Trip(err)
}

// Trip opens the breaker at once with cause (unless it is open already)
// and starts its probe.
func (b *Breaker) Trip(cause error) {
	if !b.open.CompareAndSwap(nil, &OpenError{Name: b.name, Cause: cause}) {
		return
	}
	b.opens.Add(1)
	b.since.Store(time.Now().UnixNano())
	msg := cause.Error()
	b.lastErr.Store(&msg)
	if b.onChange != nil {
		b.onChange(false, cause)
	}
	if b.probe == nil {
		b.nextTrial.Store(time.Now().Add(b.interval).UnixNano())
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.probes.Add(1)
	go b.run()
}

// reset closes an open breaker.
func (b *Breaker) reset() {
	if b.open.Swap(nil) == nil {
		return // another caller closed it
	}
	b.failures.Store(0)
	b.since.Store(time.Now().UnixNano())
	if b.onChange != nil {
		b.onChange(true, nil)
	}
}

// run probes every interval until the backend answers (or is gone), then
// closes the breaker.
func (b *Breaker) run() {
	defer b.probes.Done()
	t := time.NewTicker(b.interval)
	defer t.Stop()
	for {
		select {
		case <-b.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		err := b.probe(ctx)
		cancel()
		if err == nil || errors.Is(err, ErrGone) {
			b.reset()
			return
		}
	}
}

// Close stops the probe, if one runs, and waits for it (a breaker without
// a Probe needs no Close). The breaker keeps
// its state; an open one stays open.
func (b *Breaker) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	close(b.done)
	b.mu.Unlock()
	b.probes.Wait()
}

// Outage reports whether err, from a call to a Redis-speaking backend,
// means the backend cannot serve, so that the next call would likely wait
// and fail too: a network error or a timeout, or Redis saying it cannot
// serve (LOADING, MASTERDOWN, CLUSTERDOWN, or READONLY: a master that has
// become a replica). Redis answering with another error (about this
// call), and a caller that gave up, are not outages.
func Outage(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	// go-redis's error replies (redis.Error) have this method.
	var reply interface {
		error
		RedisError()
	}
	if errors.As(err, &reply) {
		msg := reply.Error()
		for _, p := range []string{"LOADING", "MASTERDOWN", "CLUSTERDOWN", "READONLY"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	return true
}
