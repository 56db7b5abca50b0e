// Package backendtest is the scenario suite every counter backend must pass.
//
// A backend's tests call RunScenarios with a Factory that builds a fresh,
// empty backend reading time from a Clock, and RunConcurrent with two
// instances that share one store. The expected answers are worked out by hand
// from the formulas documented in docs/algorithms.md, not by calling
// quota.Evaluate, so the suite checks quota.Evaluate as well as the backend.
package backendtest

import (
	"sync"
	"time"
)

// Clock is a settable fake clock, safe for concurrent use. Backends under test
// read time from Clock.Now instead of the wall clock, so that scenarios pin
// every decision to an exact instant.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock that reads t until it is moved.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d (backward when d is negative).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}
