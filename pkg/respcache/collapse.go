package respcache

import (
	"context"
	"time"
)

// flightKey is a key with a miss in flight; followers look up again once
// it lands, so a variant or scope the stored response does not fit is
// never served to them.
type flightKey struct{ host, path, primary string }

// flight is a miss others may wait for; done closes when it lands
// (stored, found not storable, or its exchange ended).
type flight struct{ done chan struct{} }

// lead returns the flight in progress for k (leader false), or, when
// there is none and lead is set, a new one this request leads.
func (e *Engine) lead(k flightKey, lead bool) (f *flight, leader bool) {
	e.fmu.Lock()
	defer e.fmu.Unlock()
	if f := e.flights[k]; f != nil {
		return f, false
	}
	if !lead {
		return nil, false
	}
	f = &flight{done: make(chan struct{})}
	e.flights[k] = f
	return f, true
}

// Collapsing says how many misses are in flight and how many requests
// wait behind them now.
func (e *Engine) Collapsing() (flights, waiting int) {
	e.fmu.Lock()
	defer e.fmu.Unlock()
	return len(e.flights), int(e.waiting.Load())
}

// await waits for f to land, at most the collapse wait; false when it did
// not land in time or ctx ended.
func (e *Engine) await(ctx context.Context, f *flight) bool {
	e.waiting.Add(1)
	defer e.waiting.Add(-1)
	t := time.NewTimer(e.collapseWait)
	defer t.Stop()
	select {
	case <-f.done:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// land releases the requests waiting behind t's miss, once.
func (t *Tx) land() {
	f := t.flight
	if f == nil {
		return
	}
	t.flight = nil
	e := t.e
	e.fmu.Lock()
	if e.flights[t.fk] == f {
		delete(e.flights, t.fk)
	}
	e.fmu.Unlock()
	close(f.done)
}
