package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// echo is a real TCP echo server on loopback that counts what it sees.
type echo struct {
	addr     string
	ln       net.Listener
	accepted atomic.Int64
	received atomic.Int64
	wg       sync.WaitGroup
}

func startEcho(t *testing.T) *echo {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echo{addr: ln.Addr().String(), ln: ln}
	var mu sync.Mutex
	var conns []net.Conn
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						e.received.Add(int64(n))
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		e.wg.Wait()
	})
	return e
}

func startProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// client is one connection through the proxy, reading lines.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

func (c *client) send(line string) {
	c.t.Helper()
	if _, err := c.c.Write([]byte(line + "\n")); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// recv reads one line, waiting at most wait; the error says why not.
func (c *client) recv(wait time.Duration) (string, error) {
	c.c.SetReadDeadline(time.Now().Add(wait))
	defer c.c.SetReadDeadline(time.Time{})
	s, err := c.r.ReadString('\n')
	if err != nil {
		return s, err
	}
	return s[:len(s)-1], nil
}

// roundTrip sends a line and wants it back (generous wait: a slow machine
// is not a failure).
func (c *client) roundTrip(line string) {
	c.t.Helper()
	c.send(line)
	got, err := c.recv(10 * time.Second)
	if err != nil || got != line {
		c.t.Fatalf("echo of %q: got %q, %v", line, got, err)
	}
}

// quiet is how long the tests listen for data that must not arrive. A
// pass never depends on the machine being fast: data that arrives late
// only hides a bug, it cannot fail a correct proxy.
const quiet = 150 * time.Millisecond

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

func TestForwards(t *testing.T) {
	t.Parallel()
	e := startEcho(t)
	p := startProxy(t, e.addr)
	c := dial(t, p.Addr)
	for _, line := range []string{"one", "two", "three"} {
		c.roundTrip(line)
	}
	// A large write arrives whole and in order.
	big := make([]byte, 200<<10)
	for i := range big {
		big[i] = 'a' + byte(i%26)
	}
	c.roundTrip(string(big))
	if got := p.Accepted(); got != 1 {
		t.Errorf("Accepted() = %d, want 1", got)
	}
}

// TestLatency: each direction's latency delays what goes that way by at
// least that much. Only the lower bound is checked: the proxy sleeps until
// the chunk is due, so it holds however slow the machine is.
func TestLatency(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		up, down time.Duration
	}{
		{"up", 80 * time.Millisecond, 0},
		{"down", 0, 80 * time.Millisecond},
		{"both", 50 * time.Millisecond, 60 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := startEcho(t)
			p := startProxy(t, e.addr)
			c := dial(t, p.Addr)
			c.roundTrip("warm")
			p.SetLatency(Up, tc.up)
			p.SetLatency(Down, tc.down)
			start := time.Now()
			c.roundTrip("slow")
			if took := time.Since(start); took < tc.up+tc.down {
				t.Errorf("round trip with %v up and %v down took %v, want at least %v", tc.up, tc.down, took, tc.up+tc.down)
			}
			p.Normal()
			c.roundTrip("fast again")
		})
	}
}

// TestStall: while stalled nothing reaches the target or comes back, the
// connection stays open, new connections are accepted; Normal delivers what
// was held, in order.
func TestStall(t *testing.T) {
	t.Parallel()
	e := startEcho(t)
	p := startProxy(t, e.addr)
	c := dial(t, p.Addr)
	c.roundTrip("before")
	before := e.received.Load()

	p.Stall()
	c.send("held-1")
	c.send("held-2")
	if got, err := c.recv(quiet); !isTimeout(err) {
		t.Fatalf("stalled: read %q, %v; want nothing (a timeout)", got, err)
	}
	if got := e.received.Load(); got != before {
		t.Errorf("stalled: the target received %d more bytes, want none", got-before)
	}
	// A new connection is accepted (as the kernel accepts for a stopped
	// server) but answers nothing either.
	c2 := dial(t, p.Addr)
	c2.send("new")
	if got, err := c2.recv(quiet); !isTimeout(err) {
		t.Fatalf("stalled, new connection: read %q, %v; want nothing", got, err)
	}

	p.Normal()
	for _, want := range []string{"held-1", "held-2"} {
		if got, err := c.recv(10 * time.Second); err != nil || got != want {
			t.Fatalf("after the stall: got %q, %v; want %q", got, err, want)
		}
	}
	if got, err := c2.recv(10 * time.Second); err != nil || got != "new" {
		t.Fatalf("after the stall, new connection: got %q, %v; want %q", got, err, "new")
	}
	c.roundTrip("after")
}

// TestBlackhole: new connections are accepted and get nothing, and never
// reach the target; existing ones carry on; Normal closes the held ones and
// forwards new ones again.
func TestBlackhole(t *testing.T) {
	t.Parallel()
	e := startEcho(t)
	p := startProxy(t, e.addr)
	old := dial(t, p.Addr)
	old.roundTrip("before")

	p.Blackhole()
	held := dial(t, p.Addr)
	held.send("lost")
	if got, err := held.recv(quiet); !isTimeout(err) {
		t.Fatalf("blackholed: read %q, %v; want nothing", got, err)
	}
	old.roundTrip("existing connections carry on")
	if got := e.accepted.Load(); got != 1 {
		t.Errorf("the target accepted %d connections, want 1 (the blackholed one never dialled)", got)
	}

	p.Normal()
	// Closed with unread data, it may end in a reset rather than EOF.
	if _, err := held.recv(10 * time.Second); err == nil || isTimeout(err) {
		t.Errorf("blackholed connection after Normal: %v, want it closed", err)
	}
	dial(t, p.Addr).roundTrip("forwarded again")
}

// TestCut: every connection is closed; new ones work.
func TestCut(t *testing.T) {
	t.Parallel()
	e := startEcho(t)
	p := startProxy(t, e.addr)
	a, b := dial(t, p.Addr), dial(t, p.Addr)
	a.roundTrip("a")
	b.roundTrip("b")
	if got := p.Conns(); got != 2 {
		t.Fatalf("Conns() = %d, want 2", got)
	}
	p.Cut()
	for _, c := range []*client{a, b} {
		if _, err := c.recv(10 * time.Second); !errors.Is(err, io.EOF) {
			t.Errorf("after Cut: %v, want EOF", err)
		}
	}
	dial(t, p.Addr).roundTrip("new")
}

// TestTargetDown: with nothing listening at the target, connections are
// closed at once.
func TestTargetDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := startProxy(t, addr)
	c := dial(t, p.Addr)
	if _, err := c.recv(10 * time.Second); err == nil || isTimeout(err) {
		t.Errorf("target down: %v, want the connection closed", err)
	}
}

// TestClose ends every connection and goroutine, stalled ones included.
func TestClose(t *testing.T) {
	t.Parallel()
	e := startEcho(t)
	p, err := Start(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr)
	c.roundTrip("x")
	p.Stall()
	c.send("held")
	p.Blackhole()
	dial(t, p.Addr)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// A line the stall had not caught yet may still arrive first; then the
	// connection must end.
	got, err := c.recv(10 * time.Second)
	if err == nil && got == "held" {
		got, err = c.recv(10 * time.Second)
	}
	if err == nil || isTimeout(err) {
		t.Errorf("after Close: %q, %v, want the connection closed", got, err)
	}
	if _, err := net.Dial("tcp", p.Addr); err == nil {
		t.Error("after Close the proxy still accepts")
	}
}
