package memcachestore_test

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/backendtest"
	"github.com/floodgate/floodgate/pkg/memcachestore"
	"github.com/floodgate/floodgate/pkg/quota"
)

// startMemcached runs a memcached on a free loopback port until the test
// ends; without the binary the test fails, saying how to install it.
func startMemcached(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("memcached")
	if err != nil {
		t.Fatalf("memcached not found in PATH (%v); install it with `apt-get install -y memcached` (make test does)", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0", "-m", "16", "-u", "root")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(5 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("memcached on %s never listened", addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newStore(t *testing.T, clock *backendtest.Clock, addrs ...string) *memcachestore.Store {
	t.Helper()
	s, err := memcachestore.New(memcachestore.Options{Addrs: addrs, Now: clock.Now, Prefix: t.Name() + ":"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func take(t *testing.T, s *memcachestore.Store, hits ...quota.Hit) []quota.Decision {
	t.Helper()
	out := make([]quota.Decision, len(hits))
	if err := s.Take(context.Background(), hits, out); err != nil {
		t.Fatal(err)
	}
	return out
}

var perMinute = quota.Limit{Algorithm: quota.FixedWindow, Requests: 3, Unit: time.Minute}

// TestCountsEveryHit: the reference's counting, on two servers: 3 a minute
// fit (2, 1, 0 left), the 4th and 5th do not, and the count starts again
// in the next window; the reset is the window's end.
func TestCountsEveryHit(t *testing.T) {
	t.Parallel()
	clock := backendtest.NewClock(time.Unix(1_700_000_000-1_700_000_000%3600+20, 0)) // 20 s into a minute
	s := newStore(t, clock, startMemcached(t), startMemcached(t))
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"a", "b", "c"} { // keys over both servers
		h := quota.Hit{Key: key, Limit: perMinute, N: 1, Counting: quota.Always}
		for i, want := range []quota.Decision{
			{Fits: true, Remaining: 2, ResetAfter: 40 * time.Second},
			{Fits: true, Remaining: 1, ResetAfter: 40 * time.Second},
			{Fits: true, Remaining: 0, ResetAfter: 40 * time.Second},
			{ResetAfter: 40 * time.Second},
			{ResetAfter: 40 * time.Second},
		} {
			if got := take(t, s, h)[0]; got != want {
				t.Errorf("%s hit %d: %+v, want %+v", key, i+1, got, want)
			}
		}
	}
	clock.Advance(40 * time.Second)
	if got := take(t, s, quota.Hit{Key: "a", Limit: perMinute, N: 1, Counting: quota.Always})[0]; got != (quota.Decision{Fits: true, Remaining: 2, ResetAfter: time.Minute}) {
		t.Errorf("next window: %+v, want a fresh count", got)
	}
}

// TestStopIncrementAndAllOrNothing: under UnlessOtherOver a request that
// one descriptor rejects adds nothing to its others (the over one is
// counted); under AllOrNothing a rejected request takes nothing at all.
func TestStopIncrementAndAllOrNothing(t *testing.T) {
	t.Parallel()
	clock := backendtest.NewClock(backendtest.Base)
	s := newStore(t, clock, startMemcached(t))
	one := quota.Limit{Algorithm: quota.FixedWindow, Requests: 1, Unit: time.Hour}
	for _, c := range []struct {
		name     string
		counting quota.Counting
		wideLeft uint64
	}{{"stop", quota.UnlessOtherOver, 9}, {"allornothing", quota.AllOrNothing, 9}} {
		wide := quota.Hit{Key: "wide" + c.name, Limit: quota.Limit{Algorithm: quota.FixedWindow, Requests: 10, Unit: time.Hour}, N: 1, Counting: c.counting}
		narrow := quota.Hit{Key: "narrow" + c.name, Limit: one, N: 1, Counting: c.counting}
		take(t, s, wide, narrow) // both fit: 9 and 0 left
		ds := take(t, s, wide, narrow)
		if !ds[0].Fits || ds[1].Fits {
			t.Fatalf("%s: second request %+v, want wide within, narrow over", c.name, ds)
		}
		check := func(h quota.Hit) quota.Decision { h.N = 0; return take(t, s, h)[0] }
		if d := check(wide); d.Remaining != c.wideLeft {
			t.Errorf("%s: wide has %d left, want %d (nothing added by the rejected request)", c.name, d.Remaining, c.wideLeft)
		}
	}
}

// TestOnlyFixedWindows: another algorithm is an error, not a silent fixed window.
func TestOnlyFixedWindows(t *testing.T) {
	t.Parallel()
	s, err := memcachestore.New(memcachestore.Options{Addrs: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Take(context.Background(), []quota.Hit{{Key: "k", Limit: quota.Limit{Algorithm: quota.SlidingWindow, Requests: 1, Unit: time.Minute}, N: 1}}, make([]quota.Decision, 1))
	if err == nil {
		t.Fatal("a sliding window was decided")
	}
}
