// Package faultproxy is a loopback TCP proxy for fault tests: it listens on
// 127.0.0.1, forwards every connection to one target, and injects faults
// that can be switched while traffic flows: added latency per direction,
// a stall (nothing is read or forwarded, connections stay open, as with a
// SIGSTOPped server), a blackhole for new connections, and a cut of every
// connection.
//
// Latency delays each chunk by the latency in force when it was read, so
// throughput is kept and a burst is not serialised behind one delay. A
// stall holds what was already read and delivers it, in order, when the
// stall ends, as a resumed process would answer the commands in its socket
// buffer.
package faultproxy

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Direction is one way through the proxy.
type Direction int

const (
	// Up is client to target (requests).
	Up Direction = iota
	// Down is target to client (replies).
	Down
)

// chunkSize is the most bytes read at once from one side.
const chunkSize = 32 << 10

// queueLen bounds the chunks read but not yet written, per direction of a
// connection; a full queue stops the reader, so memory stays bounded.
const queueLen = 64

// Proxy forwards connections from Addr to a target.
type Proxy struct {
	// Addr is host:port the proxy listens on (127.0.0.1, a random port).
	Addr string

	target string
	ln     net.Listener
	dialer net.Dialer

	mu        sync.Mutex
	latency   [2]time.Duration
	resume    chan struct{} // non-nil while stalled; closed when the stall ends
	blackhole bool
	conns     map[*conn]struct{}
	held      map[net.Conn]struct{} // blackholed connections
	closed    bool
	accepted  int

	wg sync.WaitGroup
}

// Start listens on 127.0.0.1:0 and forwards each connection to target
// (host:port), dialled when the connection arrives.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{
		Addr:   ln.Addr().String(),
		target: target,
		ln:     ln,
		dialer: net.Dialer{Timeout: 2 * time.Second},
		conns:  map[*conn]struct{}{},
		held:   map[net.Conn]struct{}{},
	}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// SetLatency adds d to every chunk sent in direction dir from now on
// (chunks already queued keep theirs). 0 removes it.
func (p *Proxy) SetLatency(dir Direction, d time.Duration) {
	p.mu.Lock()
	p.latency[dir] = d
	p.mu.Unlock()
}

// Stall stops reading and forwarding on every connection, existing and new,
// until Normal; connections stay open and new ones are accepted, as the
// kernel accepts them for a stopped server.
func (p *Proxy) Stall() {
	p.mu.Lock()
	if p.resume == nil {
		p.resume = make(chan struct{})
	}
	p.mu.Unlock()
}

// Blackhole makes new connections go nowhere: they are accepted and held
// open, nothing is read from them and no target is dialled, until Normal,
// Cut or Close closes them. Existing connections carry on.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	p.blackhole = true
	p.mu.Unlock()
}

// Cut closes every connection, both sides; the faults in force stay.
func (p *Proxy) Cut() {
	p.mu.Lock()
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	held := p.takeHeld()
	p.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	closeAll(held)
}

// Normal ends every fault: no latency, the stall released (held data is
// delivered), blackholed connections closed and new ones forwarded again.
func (p *Proxy) Normal() {
	p.mu.Lock()
	p.latency = [2]time.Duration{}
	if p.resume != nil {
		close(p.resume)
		p.resume = nil
	}
	p.blackhole = false
	held := p.takeHeld()
	p.mu.Unlock()
	closeAll(held)
}

// Conns returns the number of connections being forwarded now (blackholed
// ones not included).
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Accepted returns the number of connections accepted so far.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	if p.resume != nil {
		close(p.resume)
		p.resume = nil
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.Cut()
	p.wg.Wait()
	return err
}

// takeHeld empties the blackholed set; p.mu must be held.
func (p *Proxy) takeHeld() []net.Conn {
	held := make([]net.Conn, 0, len(p.held))
	for c := range p.held {
		held = append(held, c)
	}
	clear(p.held)
	return held
}

func closeAll(cs []net.Conn) {
	for _, c := range cs {
		c.Close()
	}
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient accept error (out of descriptors): back off.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.mu.Lock()
		p.accepted++
		if p.closed {
			p.mu.Unlock()
			c.Close()
			continue
		}
		if p.blackhole {
			p.held[c] = struct{}{}
			p.mu.Unlock()
			continue
		}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.forward(c)
	}
}

// gate returns the channel to wait on before reading or writing: nil when
// not stalled.
func (p *Proxy) gate() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.resume
}

func (p *Proxy) delay(dir Direction) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.latency[dir]
}

// conn is one forwarded connection: the client's side and the target's.
type conn struct {
	client, target net.Conn
	done           chan struct{}
	once           sync.Once
}

func (c *conn) close() {
	c.once.Do(func() {
		close(c.done)
		c.client.Close()
		c.target.Close()
	})
}

func (p *Proxy) forward(client net.Conn) {
	defer p.wg.Done()
	target, err := p.dialer.Dial("tcp", p.target)
	if err != nil {
		// The target refuses: so does the proxy, by closing.
		client.Close()
		return
	}
	c := &conn{client: client, target: target, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.close()
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()

	var pipes sync.WaitGroup
	pipes.Add(2)
	go func() { defer pipes.Done(); p.pipe(c, Up, client, target) }()
	go func() { defer pipes.Done(); p.pipe(c, Down, target, client) }()
	pipes.Wait()
	c.close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// chunk is bytes read from one side, due on the other at a time.
type chunk struct {
	b   []byte
	due time.Time
}

// pipe copies src to dst in direction dir until either side fails or the
// connection is closed; each chunk waits for its latency and for any stall.
func (p *Proxy) pipe(c *conn, dir Direction, src, dst net.Conn) {
	q := make(chan chunk, queueLen)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(q)
		for {
			if !p.waitGate(c) {
				return
			}
			b := make([]byte, chunkSize)
			n, err := src.Read(b)
			if n > 0 {
				select {
				case q <- chunk{b: b[:n], due: time.Now().Add(p.delay(dir))}:
				case <-c.done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for ch := range q {
		if wait := time.Until(ch.due); wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-timer.C:
			case <-c.done:
				return
			}
		}
		// A stall that began after the chunk was read holds it too.
		if !p.waitGate(c) {
			return
		}
		if _, err := dst.Write(ch.b); err != nil {
			c.close()
			return
		}
	}
	// src ended (EOF or error): pass the end on, so the other side sees
	// it, or close both when half-closing is not possible.
	if tc, ok := dst.(interface{ CloseWrite() error }); ok && tc.CloseWrite() == nil {
		return
	}
	c.close()
}

// waitGate waits while the proxy is stalled; false when the connection was
// closed meanwhile.
func (p *Proxy) waitGate(c *conn) bool {
	g := p.gate()
	if g == nil {
		select {
		case <-c.done:
			return false
		default:
			return true
		}
	}
	select {
	case <-g:
		return true
	case <-c.done:
		return false
	}
}
