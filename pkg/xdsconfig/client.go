// Package xdsconfig fetches the rate-limit config from an xDS management
// server, as envoyproxy/ratelimit does with CONFIG_TYPE=GRPC_XDS_SOTW: one
// state-of-the-world AggregatedDiscoveryService stream asking for
// RateLimitConfig resources (one per domain). Every response replaces the
// whole config; it is validated as a file would be (see Compile), then
// ACKed, or NACKed with the problems while the config in force keeps
// serving. A Client is a configsource.Watcher: the limits Source counts
// its reloads and shows its config on /debug/config as for a file.
package xdsconfig

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/floodgate/floodgate/pkg/configsource"
	"github.com/floodgate/floodgate/pkg/descriptors"
)

// Defaults of Options.
const (
	// DefaultMinBackoff is the first wait before reconnecting a lost stream.
	DefaultMinBackoff = 250 * time.Millisecond
	// DefaultMaxBackoff caps the wait. With the jitter (at most +20%) a
	// restarted server is picked up within 12 s of coming back, well
	// inside the 30 s envoyproxy/ratelimit users expect.
	DefaultMaxBackoff = 10 * time.Second
	// DefaultNACKInterval is the least time between two NACKs. A server
	// answers a NACK with the rejected version again at once (go-control-
	// plane's snapshot cache does, hundreds of times a second), so the
	// next NACK waits; a good version set meanwhile arrives after at most
	// this wait.
	DefaultNACKInterval = time.Second
	// keepaliveEvery and keepaliveTimeout: see Client.stream.
	keepaliveEvery   = 6 * time.Minute
	keepaliveTimeout = 20 * time.Second
	// maxErrorDetail bounds the problems sent back in a NACK.
	maxErrorDetail = 16 << 10
)

// Options configure a Client. Addr and NodeID are required.
type Options struct {
	// Addr is the xDS server's host:port.
	Addr string
	// NodeID is the node.id sent on each stream, the key under which the
	// server keeps this client's snapshot.
	NodeID string
	// TLS secures the connection (see ClientTLS); nil connects in
	// plaintext.
	TLS *tls.Config
	// Descriptors are the options each response is compiled with
	// (MergeDomains).
	Descriptors descriptors.Options
	// Log receives the stream's life: connects, losses, rejected versions
	// (the rejections themselves are the Source's to log). Default:
	// discarded.
	Log *slog.Logger
	// MinBackoff and MaxBackoff bound the exponential, jittered wait
	// before reconnecting (defaults DefaultMinBackoff, DefaultMaxBackoff).
	MinBackoff, MaxBackoff time.Duration
	// NACKInterval is the least time between two NACKs (default
	// DefaultNACKInterval).
	NACKInterval time.Duration
}

// Client is an xDS client for the limits config: a configsource.Watcher.
type Client struct {
	opts Options
	// accepted is the version of the config in force ("" before the
	// first), for Origin.
	accepted atomic.Pointer[string]
}

var _ configsource.Watcher[*descriptors.Config] = (*Client)(nil)

// New checks opts and returns a Client; nothing connects until Watch.
func New(opts Options) (*Client, error) {
	if opts.Addr == "" {
		return nil, errors.New("xdsconfig: no server address")
	}
	if opts.NodeID == "" {
		return nil, errors.New("xdsconfig: no node id")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = opts.MinBackoff
	}
	if opts.NACKInterval <= 0 {
		opts.NACKInterval = DefaultNACKInterval
	}
	c := &Client{opts: opts}
	c.accepted.Store(new(string))
	return c, nil
}

// Origin names the server and the version of the config in force:
// "xds://HOST:PORT version 3" ("xds://HOST:PORT" before the first).
func (c *Client) Origin() string {
	o := "xds://" + c.opts.Addr
	if v := *c.accepted.Load(); v != "" {
		o += " version " + v
	}
	return o
}

// Watch keeps a stream to the server open until ctx ends, publishing each
// config it accepts and the problems of each version it rejects. A lost
// stream (or one that cannot open) is opened again after a backoff that
// starts again from the minimum once a stream has delivered a response.
func (c *Client) Watch(ctx context.Context, publish func(*descriptors.Config, error)) error {
	st := &streamState{}
	wait := c.opts.MinBackoff
	for {
		got, err := c.stream(ctx, st, publish)
		if ctx.Err() != nil {
			return nil
		}
		if got {
			wait = c.opts.MinBackoff
		}
		// Up to 20% more, so that sidecars restarted together do not
		// reconnect in step.
		d := wait + time.Duration(rand.Int64N(int64(wait)/5+1))
		c.opts.Log.Warn("xDS stream failed; reconnecting", "server", c.opts.Addr, "err", err.Error(), "retry_in", d.String())
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(2*wait, c.opts.MaxBackoff)
	}
}

// streamState is what outlives a stream: what was accepted and rejected,
// and when the last NACK went.
type streamState struct {
	loaded      bool
	acceptedRes []*anypb.Any
	// rejected is the last rejected response's version and resources, and
	// the error detail its NACK carried.
	rejected *rejection
	lastNACK time.Time
}

type rejection struct {
	version   string
	resources []*anypb.Any
	detail    string
}

// stream runs one connection and stream until either fails or ctx ends.
// got says whether any response arrived.
func (c *Client) stream(ctx context.Context, st *streamState, publish func(*descriptors.Config, error)) (got bool, err error) {
	creds := insecure.NewCredentials()
	if c.opts.TLS != nil {
		creds = credentials.NewTLS(c.opts.TLS)
	}
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// A server that vanishes without closing the connection (a
		// partition, a frozen process) would hold the stream forever:
		// pings find it out. Not more often than every five minutes, the
		// least interval a grpc-go server (go-control-plane's, Envoy
		// Gateway's) tolerates by default before it drops the connection.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveEvery, Timeout: keepaliveTimeout}),
	}
	// A connection per stream: grpc's own reconnect backoff (up to two
	// minutes) would otherwise stand between a restarted server and us.
	conn, err := grpc.NewClient(c.opts.Addr, dial...)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return false, err
	}
	// No version on the first request: the server then sends what it has
	// even when its version happens to equal ours (a restarted server
	// counts from 1 again).
	if err := s.Send(&discoveryv3.DiscoveryRequest{
		Node:    &corev3.Node{Id: c.opts.NodeID, UserAgentName: "floodgate"},
		TypeUrl: TypeURL,
	}); err != nil {
		return false, recvErr(s, err)
	}
	for {
		resp, err := s.Recv()
		if err != nil {
			return got, err
		}
		if !got {
			c.opts.Log.Info("xDS stream open", "server", c.opts.Addr, "node", c.opts.NodeID)
		}
		got = true
		req, err := c.handle(ctx, st, resp, publish)
		if err != nil {
			return got, err
		}
		if err := s.Send(req); err != nil {
			return got, recvErr(s, err)
		}
	}
}

// recvErr is the stream's real error after a failed Send (which only
// says io.EOF).
func recvErr(s grpc.BidiStreamingClient[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse], sendErr error) error {
	if _, err := s.Recv(); err != nil {
		return err
	}
	return sendErr
}

// handle decides on one response and returns the ACK or NACK to send. It
// returns an error only when ctx ends while a NACK waits.
func (c *Client) handle(ctx context.Context, st *streamState, resp *discoveryv3.DiscoveryResponse, publish func(*descriptors.Config, error)) (*discoveryv3.DiscoveryRequest, error) {
	ack := &discoveryv3.DiscoveryRequest{TypeUrl: TypeURL, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
	switch {
	case st.loaded && sameResources(resp.GetResources(), st.acceptedRes):
		// What is in force (again, after a reconnect, or under a new
		// version number): nothing to reload.
		v := resp.GetVersionInfo()
		c.accepted.Store(&v)
		st.rejected = nil
		return ack, nil
	case st.rejected != nil && st.rejected.version == resp.GetVersionInfo() && sameResources(resp.GetResources(), st.rejected.resources):
		// The server resending what was rejected: answer the same, neither
		// compiling nor logging it again.
		return c.nack(ctx, st, resp, st.rejected.detail)
	}
	cfg, err := Compile(resp.GetResources(), c.opts.Descriptors)
	if err != nil {
		detail := err.Error()
		publish(nil, fmt.Errorf("xDS version %q rejected: %w", resp.GetVersionInfo(), err))
		st.rejected = &rejection{version: resp.GetVersionInfo(), resources: resp.GetResources(), detail: detail}
		return c.nack(ctx, st, resp, detail)
	}
	v := resp.GetVersionInfo()
	c.accepted.Store(&v)
	st.loaded, st.acceptedRes, st.rejected = true, resp.GetResources(), nil
	publish(cfg, nil)
	return ack, nil
}

// nack waits until NACKInterval has passed since the last NACK, then
// returns a NACK of resp: the version in force and the problems.
func (c *Client) nack(ctx context.Context, st *streamState, resp *discoveryv3.DiscoveryResponse, detail string) (*discoveryv3.DiscoveryRequest, error) {
	if wait := time.Until(st.lastNACK.Add(c.opts.NACKInterval)); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	st.lastNACK = time.Now()
	if len(detail) > maxErrorDetail {
		detail = detail[:maxErrorDetail] + "\n(truncated)"
	}
	return &discoveryv3.DiscoveryRequest{
		TypeUrl:       TypeURL,
		VersionInfo:   *c.accepted.Load(),
		ResponseNonce: resp.GetNonce(),
		ErrorDetail:   &statuspb.Status{Code: int32(codes.InvalidArgument), Message: detail},
	}, nil
}

// sameResources says whether two responses carry the same resources in
// the same order.
func sameResources(a, b []*anypb.Any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
