// Package memcachestore keeps fixed-window counters in memcached, as
// envoyproxy/ratelimit's memcache backend does (BACKEND_TYPE=memcache): one
// counter per key and window, created with `add` and bumped with `incr`,
// expiring with its window. Memcached has no scripts, so a batch is not
// atomic: under the reference's counting (quota.Always) each hit is one
// `incr`, decided on the count it returns; under the other countings the
// counts are read first (`get`), decided, then the hits taken are added,
// and concurrent requests may each see room that only one of them had (the
// reference's memcache backend has the same race). Only fixed windows are
// kept; a hit on another algorithm is an error.
package memcachestore

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/floodgate/floodgate/pkg/quota"
)

// DefaultMaxIdleConns is the reference's MEMCACHE_MAX_IDLE_CONNS default.
const DefaultMaxIdleConns = 2

// Options configure a Store.
type Options struct {
	// Addrs are the memcached servers, host:port; a key goes to one of
	// them by the CRC-32 of its name (as the reference's client picks).
	Addrs []string
	// MaxIdleConns bounds the idle connections kept per server (default
	// DefaultMaxIdleConns).
	MaxIdleConns int
	// Timeout bounds each command's dial, write and read (default 1s).
	Timeout time.Duration
	// Prefix starts every key (the reference's CACHE_KEY_PREFIX).
	Prefix string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Store is a quota.Limiter on memcached.
type Store struct {
	servers []*server
	timeout time.Duration
	prefix  string
	now     func() time.Time
}

var (
	_ quota.Limiter = (*Store)(nil)
	_ quota.Pinger  = (*Store)(nil)
)

// New returns a Store; it connects on first use.
func New(opts Options) (*Store, error) {
	if len(opts.Addrs) == 0 {
		return nil, errors.New("memcachestore: no server address")
	}
	if opts.MaxIdleConns < 0 {
		return nil, fmt.Errorf("memcachestore: MaxIdleConns is %d, want 0 (default %d) or more", opts.MaxIdleConns, DefaultMaxIdleConns)
	}
	s := &Store{timeout: opts.Timeout, prefix: opts.Prefix, now: opts.Now}
	if s.timeout <= 0 {
		s.timeout = time.Second
	}
	if s.now == nil {
		s.now = time.Now
	}
	idle := opts.MaxIdleConns
	if idle == 0 {
		idle = DefaultMaxIdleConns
	}
	for _, a := range opts.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("memcachestore: server %q: %w", a, err)
		}
		s.servers = append(s.servers, &server{addr: a, idle: make(chan *conn, idle)})
	}
	return s, nil
}

// Close drops the idle connections.
func (s *Store) Close() error {
	for _, sv := range s.servers {
		for {
			select {
			case c := <-sv.idle:
				c.nc.Close()
				continue
			default:
			}
			break
		}
	}
	return nil
}

// Ping asks every server for its version.
func (s *Store) Ping(ctx context.Context) error {
	for _, sv := range s.servers {
		if err := sv.do(ctx, s.timeout, func(c *conn) error {
			line, err := c.cmd("version\r\n")
			if err == nil && !strings.HasPrefix(line, "VERSION") {
				err = fmt.Errorf("version: %q", line)
			}
			return err
		}); err != nil {
			return fmt.Errorf("memcached %s: %w", sv.addr, err)
		}
	}
	return nil
}

// window is one hit's counter: its memcached key and its window's end.
type window struct {
	key   string
	end   time.Time
	limit uint64
}

func (s *Store) window(h *quota.Hit, now time.Time) (window, error) {
	if h.Limit.Algorithm != quota.FixedWindow {
		return window{}, fmt.Errorf("memcachestore: %s limits are not kept in memcached, only fixed windows", h.Limit.Algorithm)
	}
	unit := h.Limit.Unit
	if unit < time.Second || unit%time.Second != 0 {
		return window{}, fmt.Errorf("memcachestore: a window of %s, want whole seconds", unit)
	}
	// Windows aligned to the epoch, as the reference's.
	start := time.Unix(now.Unix()-now.Unix()%int64(unit/time.Second), 0)
	return window{key: s.safeKey(h.Key + "_" + strconv.FormatInt(start.Unix(), 10)), end: start.Add(unit), limit: h.Limit.Capacity()}, nil
}

// safeKey is key as memcached takes it: at most 250 bytes, none of them
// space or control; any other key is replaced by its SHA-256.
func (s *Store) safeKey(key string) string {
	key = s.prefix + key
	ok := len(key) <= 250
	for i := 0; ok && i < len(key); i++ {
		ok = key[i] > ' ' && key[i] < 0x7f
	}
	if ok {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "floodgate-sha256:" + hex.EncodeToString(sum[:])
}

func (s *Store) server(key string) *server {
	return s.servers[crc32.ChecksumIEEE([]byte(key))%uint32(len(s.servers))]
}

// expiry is memcached's exptime for a counter ending at end: seconds from
// now up to 30 days, past that an absolute Unix time (its rule).
func expiry(end, now time.Time) int64 {
	d := int64(end.Sub(now)/time.Second) + 1
	if d > 30*24*3600 {
		return end.Unix() + 1
	}
	return d
}

// Take decides hits as fixed windows in memcached.
func (s *Store) Take(ctx context.Context, hits []quota.Hit, out []quota.Decision) error {
	now := s.now()
	ws := make([]window, len(hits))
	always := true
	for i := range hits {
		w, err := s.window(&hits[i], now)
		if err != nil {
			return err
		}
		ws[i] = w
		always = always && (hits[i].Counting == quota.Always || hits[i].N == 0)
	}
	decide := func(i int, after uint64) {
		w := ws[i]
		d := quota.Decision{Fits: after <= w.limit, ResetAfter: w.end.Sub(now)}
		if d.Fits {
			d.Remaining = w.limit - after
		}
		out[i] = d
	}
	if always {
		// The reference's counting: every hit taken, decided on its count.
		for i := range hits {
			var after uint64
			var err error
			if hits[i].N == 0 {
				after, err = s.get(ctx, ws[i].key)
			} else {
				after, err = s.incr(ctx, ws[i].key, hits[i].N, expiry(ws[i].end, now))
			}
			if err != nil {
				return err
			}
			decide(i, after)
		}
		return nil
	}
	// Read, decide as if the batch's earlier hits were taken, then take.
	counts := map[string]uint64{}
	for i := range hits {
		k := ws[i].key
		if _, ok := counts[k]; !ok {
			v, err := s.get(ctx, k)
			if err != nil {
				return err
			}
			counts[k] = v
		}
		decide(i, counts[k]+hits[i].N)
		if quota.Chains(&hits[i], &out[i]) {
			counts[k] += hits[i].N
		}
	}
	rejected, allFit := quota.Rejects(hits, out), quota.AllFit(out)
	for i := range hits {
		if quota.Taken(&hits[i], &out[i], rejected, allFit) {
			if _, err := s.incr(ctx, ws[i].key, hits[i].N, expiry(ws[i].end, now)); err != nil {
				return err
			}
		}
	}
	return nil
}

// get reads a counter, 0 when absent.
func (s *Store) get(ctx context.Context, key string) (uint64, error) {
	var v uint64
	err := s.server(key).do(ctx, s.timeout, func(c *conn) error {
		line, err := c.cmd("get " + key + "\r\n")
		if err != nil {
			return err
		}
		if line == "END" {
			return nil
		}
		f := strings.Fields(line)
		if len(f) != 4 || f[0] != "VALUE" {
			return fmt.Errorf("get: %q", line)
		}
		data, err := c.line()
		if err != nil {
			return err
		}
		if v, err = strconv.ParseUint(strings.TrimSpace(data), 10, 64); err != nil {
			return fmt.Errorf("get %s: %q is not a count", key, data)
		}
		if end, err := c.line(); err != nil || end != "END" {
			return fmt.Errorf("get: %q, %v", end, err)
		}
		return nil
	})
	return v, err
}

// incr adds n to a counter, creating it (expiring at exptime) when absent,
// and returns its new count.
func (s *Store) incr(ctx context.Context, key string, n uint64, exptime int64) (uint64, error) {
	var v uint64
	err := s.server(key).do(ctx, s.timeout, func(c *conn) error {
		for range 3 {
			line, err := c.cmd("incr " + key + " " + strconv.FormatUint(n, 10) + "\r\n")
			if err != nil {
				return err
			}
			if line != "NOT_FOUND" {
				v, err = strconv.ParseUint(line, 10, 64)
				if err != nil {
					return fmt.Errorf("incr: %q", line)
				}
				return nil
			}
			val := strconv.FormatUint(n, 10)
			line, err = c.cmd("add " + key + " 0 " + strconv.FormatInt(exptime, 10) + " " + strconv.Itoa(len(val)) + "\r\n" + val + "\r\n")
			if err != nil {
				return err
			}
			if line == "STORED" {
				v = n
				return nil
			}
			if line != "NOT_STORED" {
				return fmt.Errorf("add: %q", line)
			}
			// Another client added it first: increment it.
		}
		return fmt.Errorf("incr %s: created and gone again", key)
	})
	return v, err
}

type server struct {
	addr string
	idle chan *conn
}

type conn struct {
	nc net.Conn
	r  *bufio.Reader
}

// do runs f on a connection to sv, kept for reuse when f succeeds.
func (sv *server) do(ctx context.Context, timeout time.Duration, f func(*conn) error) error {
	var c *conn
	select {
	case c = <-sv.idle:
	default:
		d := net.Dialer{Timeout: timeout}
		nc, err := d.DialContext(ctx, "tcp", sv.addr)
		if err != nil {
			return fmt.Errorf("memcached %s: %w", sv.addr, err)
		}
		c = &conn{nc: nc, r: bufio.NewReader(nc)}
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.nc.SetDeadline(deadline)
	if err := f(c); err != nil {
		c.nc.Close()
		return fmt.Errorf("memcached %s: %w", sv.addr, err)
	}
	select {
	case sv.idle <- c:
	default:
		c.nc.Close()
	}
	return nil
}

// cmd writes a command and reads its first reply line.
func (c *conn) cmd(s string) (string, error) {
	if _, err := c.nc.Write([]byte(s)); err != nil {
		return "", err
	}
	line, err := c.line()
	if err == nil && (strings.HasPrefix(line, "ERROR") || strings.HasPrefix(line, "CLIENT_ERROR") || strings.HasPrefix(line, "SERVER_ERROR")) {
		return "", errors.New(line)
	}
	return line, err
}

func (c *conn) line() (string, error) {
	l, err := c.r.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}
