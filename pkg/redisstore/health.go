package redisstore

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/pkg/breaker"
)

// node is one Redis the store sends script calls to, with its breaker: the
// standalone Redis (or Sentinel's master), or one master of a cluster. On
// a cluster each master is judged on its own, so that while one fails
// over, the keys on the others are still decided; a master that loses its
// slots (its replica took over) is forgotten, and the slots' new master
// gets a node of its own as calls reach it.
type node struct {
	s      *Store
	client *redis.Client // a cluster master; nil for the store's own client
	addr   string
	b      *breaker.Breaker
	// unavail is the error gate returns for the breaker's current
	// opening, made once per opening.
	unavail atomic.Pointer[unavailFor]
}

type unavailFor struct {
	open *breaker.OpenError
	err  *unavailErr
}

// NodeHealth is one Redis node's state, for status pages and metrics.
type NodeHealth struct {
	// Addr is the node's host:port ("" for a standalone or Sentinel
	// client: the one Redis).
	Addr string
	// Up is false while the node's breaker has it down.
	Up bool
	// Since is when it was last marked down or up (zero: never).
	Since time.Time
	// LastError is what last marked it down.
	LastError string
}

func (s *Store) newNode(c *redis.Client, addr string) *node {
	n := &node{s: s, client: c, addr: addr}
	n.b = breaker.New(breaker.Options{
		Name:     addr,
		Failures: s.breakerFailures,
		Interval: s.probeInterval,
		Timeout:  s.probeTimeout,
		Probe:    n.probe,
		OnChange: n.changed,
	})
	return n
}

// gate returns nil while the node is up, else an error wrapping
// ErrUnavailable, without allocating after the first call of an outage.
func (n *node) gate() error {
	e := n.b.Allow()
	if e == nil {
		return nil
	}
	open := e.(*breaker.OpenError)
	if u := n.unavail.Load(); u != nil && u.open == open {
		return u.err
	}
	u := &unavailFor{open: open, err: &unavailErr{node: n.addr, cause: open.Cause}}
	n.unavail.Store(u)
	return u.err
}

// record feeds the node's breaker with the outcome of one exchange.
func (n *node) record(err error) {
	if err != nil && n.s.closed.Load() {
		return
	}
	n.b.Record(err, err != nil && isOutage(err))
}

// probe tells the breaker whether the node answers again. A cluster
// master that no longer owns slots is gone: its breaker closes and the
// node is forgotten.
func (n *node) probe(ctx context.Context) error {
	if n.client == nil {
		return n.s.client.Ping(ctx).Err()
	}
	// ForEachMaster reloads the cluster's slots first (falling back on
	// the view it has when no node answers).
	var found atomic.Bool
	if err := n.s.cluster.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
		if c == n.client {
			found.Store(true)
		}
		return nil
	}); err != nil {
		return err
	}
	if !found.Load() {
		n.s.forget(n)
		return breaker.ErrGone
	}
	return n.client.Ping(ctx).Err()
}

func (n *node) changed(up bool, err error) {
	if up {
		n.s.stats.recoveries.Add(1)
	} else {
		n.s.stats.trips.Add(1)
	}
	if n.s.onState != nil {
		n.s.onState(n.addr, up, err)
	}
}

// nodeFor returns the node that owns key's slot on a cluster.
func (s *Store) nodeFor(ctx context.Context, key string) (*node, error) {
	c, err := s.cluster.MasterForKey(ctx, key)
	if err != nil {
		return nil, err
	}
	s.nodesMu.RLock()
	n := s.nodes[c]
	s.nodesMu.RUnlock()
	if n != nil {
		return n, nil
	}
	s.nodesMu.Lock()
	defer s.nodesMu.Unlock()
	if n = s.nodes[c]; n == nil {
		n = s.newNode(c, c.Options().Addr)
		s.nodes[c] = n
	}
	return n, nil
}

// forget drops a cluster node that no longer owns slots.
func (s *Store) forget(n *node) {
	s.nodesMu.Lock()
	if s.nodes[n.client] == n {
		delete(s.nodes, n.client)
	}
	s.nodesMu.Unlock()
}

// allNodes returns the nodes known now.
func (s *Store) allNodes() []*node {
	if s.main != nil {
		return []*node{s.main}
	}
	s.nodesMu.RLock()
	defer s.nodesMu.RUnlock()
	ns := make([]*node, 0, len(s.nodes))
	for _, n := range s.nodes {
		ns = append(ns, n)
	}
	return ns
}

// Health returns the state of each Redis node the store has sent calls
// to: the one Redis, or the masters of a cluster (a master appears once a
// call reached it, and is dropped once it no longer owns slots).
func (s *Store) Health() []NodeHealth {
	ns := s.allNodes()
	out := make([]NodeHealth, 0, len(ns))
	for _, n := range ns {
		st := n.b.State()
		out = append(out, NodeHealth{Addr: n.addr, Up: st.Up, Since: st.Since, LastError: st.LastError})
	}
	return out
}
