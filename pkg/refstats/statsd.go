package refstats

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Statsd defaults (see StatsdOptions).
const (
	DefaultFlushInterval = 10 * time.Second
	// DefaultMaxPending bounds the bytes waiting for statsd: about the
	// reference's (gostats') 4 MiB of queued buffers.
	DefaultMaxPending = 4 << 20
	// udpPacket is gostats' UDP payload: lines are packed into datagrams of
	// at most this many bytes.
	udpPacket = 1432
	// sendEvery is how often waiting lines (timers) are written, as gostats
	// flushes its buffer every second.
	sendEvery    = time.Second
	dialTimeout  = 1500 * time.Millisecond
	writeTimeout = time.Second
)

// StatsdOptions configure the statsd sink.
type StatsdOptions struct {
	// Addr is statsd's host:port; "" sends nothing.
	Addr string
	// Protocol is "tcp" (the default, as the reference's) or "udp".
	Protocol string
	// FlushInterval is how often counter deltas are sent (default 10s,
	// the reference's STATS_FLUSH_INTERVAL); timers go out within a
	// second, or at each flush when it is shorter.
	FlushInterval time.Duration
	// MaxPending bounds the bytes kept while statsd is away; lines past
	// it are dropped, counters keeping their deltas for a later flush
	// (default 4 MiB).
	MaxPending int
}

// statsdSink batches lines for statsd and writes them from one goroutine,
// connecting (again) when it must; a statsd that is away costs the request
// path nothing and the process at most MaxPending bytes.
type statsdSink struct {
	network, addr string
	every, flush  time.Duration
	maxPending    int
	log           *slog.Logger

	mu      sync.Mutex
	pending []byte
	dropped uint64 // bytes of lines dropped since the last log line

	conn       net.Conn  // the sender's alone
	down       bool      // the last connect or write failed (logged once)
	droppedLog time.Time // when dropped lines were last logged (at most once a minute)
	droppedSum uint64    // bytes dropped since then

	started, closed atomic.Bool
	stop            chan struct{}
	done            chan struct{}
}

func newStatsdSink(o StatsdOptions, log *slog.Logger) *statsdSink {
	s := &statsdSink{
		network: o.Protocol, addr: o.Addr, flush: o.FlushInterval, maxPending: o.MaxPending, log: log,
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	if s.network == "" {
		s.network = "tcp"
	}
	if s.flush <= 0 {
		s.flush = DefaultFlushInterval
	}
	if s.maxPending <= 0 {
		s.maxPending = DefaultMaxPending
	}
	s.every = min(sendEvery, s.flush)
	return s
}

// CheckStatsd checks statsd settings: a host:port and tcp or udp.
func CheckStatsd(o StatsdOptions) error {
	if o.Addr == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(o.Addr); err != nil {
		return fmt.Errorf("--statsd-addr %q: %w", o.Addr, err)
	}
	switch o.Protocol {
	case "", "tcp", "udp":
	default:
		return fmt.Errorf("--statsd-protocol %q: want tcp or udp", o.Protocol)
	}
	return nil
}

// line appends name:v|suffix, or drops it when MaxPending is reached; it
// reports whether the line was kept.
func (s *statsdSink) line(name string, v int64, suffix string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending)+len(name)+len(suffix)+22 > s.maxPending {
		s.dropped += uint64(len(name) + len(suffix) + 2)
		return false
	}
	s.pending = append(s.pending, name...)
	s.pending = append(s.pending, ':')
	s.pending = strconv.AppendInt(s.pending, v, 10)
	s.pending = append(s.pending, suffix...)
	return true
}

// run sends until close: counter deltas every flush, waiting lines every
// second.
func (s *statsdSink) run(st *Stats) {
	defer close(s.done)
	t := time.NewTicker(s.every)
	defer t.Stop()
	lastFlush := time.Now()
	var spare []byte
	for {
		select {
		case <-s.stop:
			st.latch()
			s.send(&spare)
			if s.conn != nil {
				s.conn.Close()
			}
			return
		case now := <-t.C:
			if now.Sub(lastFlush) >= s.flush-s.every/2 {
				lastFlush = now
				st.latch()
			}
			s.send(&spare)
		}
	}
}

// latch queues every counter's change since the last flush, as gostats
// flushes a counter only when it moved.
func (st *Stats) latch() {
	for _, c := range st.snapshot() {
		v := c.v.Load()
		if d := v - c.sent; d != 0 && st.statsd.line(c.name, int64(d), "|c\n") {
			c.sent = v
		}
	}
	// Gauges every flush, moved or not, as gostats sends them.
	for _, g := range st.gaugeList() {
		st.statsd.line(g.name, int64(g.read()), "|g\n")
	}
}

// send writes the waiting lines; on failure they wait for the next try
// (within MaxPending), and the connection is made again then.
func (s *statsdSink) send(spare *[]byte) {
	s.mu.Lock()
	buf := s.pending
	s.pending = (*spare)[:0]
	dropped := s.dropped
	s.dropped = 0
	s.mu.Unlock()
	s.droppedSum += dropped
	if s.droppedSum > 0 && time.Since(s.droppedLog) >= time.Minute {
		s.log.Warn("statsd: lines dropped, too many bytes waiting", "bytes", s.droppedSum, "max_pending", s.maxPending)
		s.droppedLog, s.droppedSum = time.Now(), 0
	}
	if len(buf) == 0 {
		*spare = buf
		return
	}
	err := s.write(buf)
	if err == nil {
		if s.down {
			s.log.Info("statsd: sending again", "addr", s.addr, "protocol", s.network)
			s.down = false
		}
		*spare = buf[:0]
		return
	}
	if !s.down {
		s.log.Warn("statsd: cannot send; keeping stats and trying again", "addr", s.addr, "protocol", s.network, "err", err.Error())
		s.down = true
	}
	// Put the lines back before those queued since.
	s.mu.Lock()
	if len(buf)+len(s.pending) <= s.maxPending {
		buf = append(buf, s.pending...)
		*spare = s.pending[:0]
		s.pending = buf
	} else {
		s.dropped += uint64(len(buf))
		*spare = buf[:0]
	}
	s.mu.Unlock()
}

func (s *statsdSink) write(buf []byte) error {
	if s.conn == nil {
		c, err := net.DialTimeout(s.network, s.addr, dialTimeout)
		if err != nil {
			return err
		}
		s.conn = c
	}
	var err error
	if s.network == "udp" {
		err = s.writePackets(buf)
	} else {
		s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		_, err = s.conn.Write(buf)
	}
	if err != nil {
		s.conn.Close()
		s.conn = nil
	}
	return err
}

// writePackets sends buf as datagrams of whole lines, each at most
// udpPacket bytes (a longer line goes alone).
func (s *statsdSink) writePackets(buf []byte) error {
	for len(buf) > 0 {
		n := 0
		for n < len(buf) {
			end := len(buf)
			if i := bytes.IndexByte(buf[n:], '\n'); i >= 0 {
				end = n + i + 1
			}
			if end > udpPacket && n > 0 {
				break
			}
			n = end
		}
		if _, err := s.conn.Write(buf[:n]); err != nil {
			return err
		}
		buf = buf[n:]
	}
	return nil
}

// timer is one timer stat: every value goes to statsd as a line and into
// its Prometheus histogram or summary.
type timer struct {
	name   string
	statsd *statsdSink
	obs    prometheus.Observer
	scale  float64
	scaled bool
}

// timerLocked returns the timer named name, made if new; s.mu is held.
func (s *Stats) timerLocked(name string) *timer {
	name += s.tags
	if t := s.timers[name]; t != nil {
		return t
	}
	t := &timer{name: name, statsd: s.statsd}
	if s.prom != nil {
		t.obs, t.scale, t.scaled = s.prom.observer(name)
	}
	s.timers[name] = t
	return t
}

func (t *timer) add(ms int64) {
	if t.statsd != nil {
		t.statsd.line(t.name, ms, "|ms\n")
	}
	if t.obs != nil {
		v := float64(ms)
		if t.scaled {
			v *= t.scale
		}
		t.obs.Observe(v)
	}
}

// Start starts sending to statsd (when an address is set). It runs once;
// later calls do nothing.
func (s *Stats) Start() {
	if s.statsd != nil && s.statsd.started.CompareAndSwap(false, true) {
		go s.statsd.run(s)
	}
}

// Close sends what is left to statsd (one try) and stops sending; without
// Start, or called again, it does nothing.
func (s *Stats) Close() {
	if s.statsd != nil && s.statsd.started.Load() && s.statsd.closed.CompareAndSwap(false, true) {
		close(s.statsd.stop)
		<-s.statsd.done
	}
}
