// Package xdstest runs go-control-plane's own xDS server (its SotW server
// over a snapshot cache) on a loopback port for tests, serving
// RateLimitConfig resources, and counts the ACKs and NACKs it receives.
package xdstest

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	rlconf "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Server is a running xDS server. Its methods are safe for concurrent use.
type Server struct {
	// Addr is the server's 127.0.0.1:port; it stays the same across
	// Restart.
	Addr string

	t      testing.TB
	tls    *tls.Config
	mu     sync.Mutex
	cache  cachev3.SnapshotCache
	grpc   *grpc.Server
	cancel context.CancelFunc
	ln     net.Listener
	nacks  []*discoveryv3.DiscoveryRequest
	acks   []*discoveryv3.DiscoveryRequest
	reqs   int
	done   chan struct{}
}

// Start starts a plaintext server for this test on 127.0.0.1:0; it stops
// when the test ends.
func Start(t testing.TB) *Server { return StartTLS(t, nil) }

// StartTLS starts a server that speaks TLS with cfg (plaintext when nil).
func StartTLS(t testing.TB, cfg *tls.Config) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: ln.Addr().String(), t: t, tls: cfg}
	s.serve(ln)
	t.Cleanup(s.Stop)
	return s
}

// serve starts a fresh cache and gRPC server on ln.
func (s *Server) serve(ln net.Listener) {
	ctx, cancel := context.WithCancel(context.Background())
	cache := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	cb := serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.reqs++
			switch {
			case r.GetErrorDetail() != nil:
				s.nacks = append(s.nacks, r)
			case r.GetResponseNonce() != "":
				s.acks = append(s.acks, r)
			}
			return nil
		},
	}
	var opts []grpc.ServerOption
	if s.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.tls)))
	}
	g := grpc.NewServer(opts...)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, serverv3.NewServer(ctx, cache, cb))
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Serve(ln)
	}()
	s.mu.Lock()
	s.cache, s.grpc, s.cancel, s.ln, s.done = cache, g, cancel, ln, done
	s.mu.Unlock()
}

// Set makes configs, as version, the snapshot of node.
func (s *Server) Set(node, version string, configs ...*rlconf.RateLimitConfig) {
	s.t.Helper()
	res := make([]types.Resource, len(configs))
	for i, c := range configs {
		res[i] = c
	}
	snap, err := cachev3.NewSnapshot(version, map[resourcev3.Type][]types.Resource{resourcev3.RateLimitConfigType: res})
	if err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	cache := s.cache
	s.mu.Unlock()
	if err := cache.SetSnapshot(context.Background(), node, snap); err != nil {
		s.t.Fatal(err)
	}
}

// Stop stops the server, cutting its streams.
func (s *Server) Stop() {
	s.mu.Lock()
	g, cancel, done := s.grpc, s.cancel, s.done
	s.grpc = nil
	s.mu.Unlock()
	if g == nil {
		return
	}
	cancel()
	g.Stop()
	<-done
}

// Restart stops the server and starts a new one, with an empty cache, on
// the same address after down, as a restarted management server would be.
func (s *Server) Restart(down time.Duration) {
	s.t.Helper()
	s.Stop()
	time.Sleep(down)
	var ln net.Listener
	var err error
	for range 50 { // the port was ours a moment ago
		if ln, err = net.Listen("tcp", s.Addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("xdstest: listening again on %s: %v", s.Addr, err)
	}
	s.serve(ln)
}

// NACKs are the NACKs received so far, oldest first.
func (s *Server) NACKs() []*discoveryv3.DiscoveryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*discoveryv3.DiscoveryRequest(nil), s.nacks...)
}

// ACKs are the requests received that answered a response without an
// error, oldest first.
func (s *Server) ACKs() []*discoveryv3.DiscoveryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*discoveryv3.DiscoveryRequest(nil), s.acks...)
}

// Requests is how many requests the server has received.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reqs
}

// Limit is a RateLimitConfig of one domain whose descriptors are key=value
// pairs each limited to rpm requests per minute.
func Limit(domain string, rpm uint32, keyValues ...string) *rlconf.RateLimitConfig {
	c := &rlconf.RateLimitConfig{Name: domain, Domain: domain}
	for i := 0; i+1 < len(keyValues); i += 2 {
		c.Descriptors = append(c.Descriptors, &rlconf.RateLimitDescriptor{
			Key: keyValues[i], Value: keyValues[i+1],
			RateLimit: &rlconf.RateLimitPolicy{Unit: rlconf.RateLimitUnit_MINUTE, RequestsPerUnit: rpm},
		})
	}
	return c
}
