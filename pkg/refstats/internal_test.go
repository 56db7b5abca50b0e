package refstats

import (
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// TestPendingIsBounded: with statsd away, what waits stays within
// MaxPending, and counters keep their deltas for later.
func TestPendingIsBounded(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := New(Options{Statsd: StatsdOptions{Addr: addr, MaxPending: 512}})
	m := s.methodStats("/x.Y/Z")
	for range 1000 {
		m.total.add(1)
		m.responseTime.add(3)
	}
	var spare []byte
	s.latch()
	s.statsd.send(&spare)
	s.statsd.mu.Lock()
	n := len(s.statsd.pending)
	s.statsd.mu.Unlock()
	if n > 512 {
		t.Fatalf("%d bytes waiting, MaxPending 512", n)
	}
	if m.total.v.Load() != 1000 {
		t.Fatal("the counter lost hits")
	}
}

// TestUDPPackets: lines are packed into datagrams of at most 1432 bytes,
// never split.
func TestUDPPackets(t *testing.T) {
	t.Parallel()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s := newStatsdSink(StatsdOptions{Addr: pc.LocalAddr().String(), Protocol: "udp"}, slog.New(slog.DiscardHandler))
	line := strings.Repeat("a", 90) + ":1|c\n" // 95 bytes
	var buf []byte
	for range 40 {
		buf = append(buf, line...)
	}
	if err := s.write(buf); err != nil {
		t.Fatal(err)
	}
	total := 0
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	p := make([]byte, 65536)
	for total < len(buf) {
		n, _, err := pc.ReadFrom(p)
		if err != nil {
			t.Fatal(err)
		}
		if n > udpPacket || n%len(line) != 0 {
			t.Fatalf("a datagram of %d bytes", n)
		}
		total += n
	}
}
