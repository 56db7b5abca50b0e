package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate/pkg/breaker"
)

var errNet = &net.OpError{Op: "read", Net: "tcp", Err: errors.New("i/o timeout")}

// replyErr is an error reply, as go-redis's redis.Error is.
type replyErr string

func (e replyErr) Error() string { return string(e) }
func (replyErr) RedisError()     {}

// waitFor polls cond; the generous bound is only there to end a broken test.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestOpensAfterFailuresInARow(t *testing.T) {
	var probing atomic.Bool
	var changes []bool
	var mu sync.Mutex
	b := breaker.New(breaker.Options{
		Name: "node-a", Failures: 3, Interval: time.Millisecond,
		Probe: func(context.Context) error {
			if probing.Load() {
				return nil
			}
			return errNet
		},
		OnChange: func(up bool, _ error) { mu.Lock(); changes = append(changes, up); mu.Unlock() },
	})
	defer b.Close()

	// Two outages, an answer, two outages: never three in a row.
	for _, err := range []error{errNet, errNet, nil, errNet, errNet} {
		b.Record(err, err != nil)
	}
	// Errors that are not outages do not count, nor break the row.
	b.Record(replyErr("ERR wrong"), false)
	if err := b.Allow(); err != nil {
		t.Fatalf("open after 2 outages in a row: %v", err)
	}
	b.Record(errNet, true)
	err := b.Allow()
	var open *breaker.OpenError
	if !errors.Is(err, breaker.ErrOpen) || !errors.As(err, &open) || open.Name != "node-a" || !errors.Is(err, errNet) {
		t.Fatalf("Allow after 3 outages = %v, want an OpenError for node-a wrapping the cause", err)
	}
	if st := b.State(); st.Up || st.Opens != 1 || st.LastError == "" || st.Since.IsZero() {
		t.Errorf("State %+v", st)
	}
	// The same error value each time: no allocation per refused call.
	if again := b.Allow(); again != err {
		t.Errorf("Allow gave a new error: %p, %p", again, err)
	}
	probing.Store(true)
	waitFor(t, b.Up)
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(changes) != "[false true]" {
		t.Errorf("changes %v, want [false true]", changes)
	}
}

// TestGoneCloses: a probe that says the backend is gone closes the breaker
// (a cluster master whose slots moved to its replica).
func TestGoneCloses(t *testing.T) {
	b := breaker.New(breaker.Options{Interval: time.Millisecond, Probe: func(context.Context) error {
		return fmt.Errorf("moved: %w", breaker.ErrGone)
	}})
	defer b.Close()
	b.Trip(errNet)
	waitFor(t, b.Up)
}

// TestHalfOpen: without a probe, an open breaker lets exactly one call
// through per interval; that call's answer closes it.
func TestHalfOpen(t *testing.T) {
	b := breaker.New(breaker.Options{Failures: 1, Interval: 50 * time.Millisecond})
	b.Record(io.ErrUnexpectedEOF, true)
	if b.Up() {
		t.Fatal("still up after an outage with Failures 1")
	}
	// Many callers at once after the interval: one trial among them.
	waitFor(t, func() bool {
		var allowed atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if b.Allow() == nil {
					allowed.Add(1)
				}
			}()
		}
		wg.Wait()
		if n := allowed.Load(); n > 1 {
			t.Fatalf("%d trial calls at once, want at most 1", n)
		}
		return allowed.Load() == 1
	})
	// The trial failed: still open.
	b.Record(errNet, true)
	if b.Up() {
		t.Fatal("a failed trial closed the breaker")
	}
	waitFor(t, func() bool { return b.Allow() == nil })
	b.Record(nil, false)
	if !b.Up() || b.Allow() != nil {
		t.Fatal("a trial that went through left the breaker open")
	}
}

func TestCloseStopsProbe(t *testing.T) {
	var probes atomic.Int64
	b := breaker.New(breaker.Options{Interval: time.Millisecond, Probe: func(context.Context) error {
		probes.Add(1)
		return errNet
	}})
	b.Trip(errNet)
	waitFor(t, func() bool { return probes.Load() > 2 })
	b.Close()
	n := probes.Load()
	time.Sleep(20 * time.Millisecond)
	if probes.Load() != n {
		t.Error("the probe runs after Close")
	}
	b.Close() // twice is fine
	b.Trip(errNet)
}

// TestConcurrentRecord: callers recording outages and answers at once
// open the breaker once at most per outage and never lose the probe.
func TestConcurrentRecord(t *testing.T) {
	var up atomic.Bool
	var opens, closes atomic.Int64
	b := breaker.New(breaker.Options{Interval: time.Millisecond,
		Probe: func(context.Context) error {
			if up.Load() {
				return nil
			}
			return errNet
		},
		OnChange: func(u bool, _ error) {
			if u {
				closes.Add(1)
			} else {
				opens.Add(1)
			}
		}})
	defer b.Close()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				b.Record(errNet, true)
				_ = b.Allow()
			}
		}()
	}
	wg.Wait()
	if opens.Load() != 1 {
		t.Fatalf("%d openings for one outage", opens.Load())
	}
	up.Store(true)
	waitFor(t, b.Up)
	if closes.Load() != 1 || b.State().Opens != 1 {
		t.Errorf("%d closings, State %+v", closes.Load(), b.State())
	}
}

func TestOutage(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{context.Canceled, false},
		{fmt.Errorf("take: %w", context.Canceled), false},
		{context.DeadlineExceeded, true},
		{errNet, true},
		{io.EOF, true},
		{replyErr("ERR unknown command"), false},
		{replyErr("NOSCRIPT No matching script"), false},
		{fmt.Errorf("x: %w", replyErr("LOADING Redis is loading")), true},
		{replyErr("MASTERDOWN Link with MASTER is down"), true},
		{replyErr("CLUSTERDOWN The cluster is down"), true},
		{replyErr("READONLY You can't write against a read only replica."), true},
	} {
		if got := breaker.Outage(tt.err); got != tt.want {
			t.Errorf("Outage(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
