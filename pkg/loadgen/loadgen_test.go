package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// serve starts srv on a free loopback port and returns its address.
func serve(t *testing.T, srv rlsv3.RateLimitServiceServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	rlsv3.RegisterRateLimitServiceServer(s, srv)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

// testOptions is a small bounded run against addr.
func testOptions(addr string, requests uint64) Options {
	o := DefaultOptions()
	o.Addr = addr
	o.Domain = "bench"
	o.Descriptors = []Descriptor{{{"remote_address", "10.0.{n}"}}}
	o.Keys = 100
	o.Concurrency = 8
	o.Connections = 2
	o.Duration = 0
	o.Requests = requests
	o.Seed = 1
	return o
}

func TestRunAgainstFloor(t *testing.T) {
	t.Parallel()
	floor := &FloorServer{}
	addr := serve(t, floor)
	o := testOptions(addr, 500)
	o.PID = os.Getpid() // the floor runs in this process
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 500 || res.OK != 500 || res.OverLimit != 0 || res.Unknown != 0 || res.ErrorsTotal != 0 {
		t.Errorf("requests %d ok %d over %d unknown %d errors %d %v, want 500 OK and nothing else",
			res.Requests, res.OK, res.OverLimit, res.Unknown, res.ErrorsTotal, res.Errors)
	}
	if got := floor.Served(); got != 500 {
		t.Errorf("floor served %d, want 500", got)
	}
	if got := res.Histogram.Count(); got != 500 {
		t.Errorf("histogram holds %d latencies, want 500", got)
	}
	if res.RPS <= 0 || res.ElapsedSeconds <= 0 {
		t.Errorf("rps %v elapsed %v, want positive", res.RPS, res.ElapsedSeconds)
	}
	l := res.LatencyMicros
	if !(l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) || l.Max <= 0 {
		t.Errorf("latency summary out of order: %+v", l)
	}
	if res.ServerCPU == nil || res.ServerCPU.PID != o.PID {
		t.Errorf("ServerCPU = %+v, want a report for pid %d", res.ServerCPU, o.PID)
	}
	if res.LoadgenCPU == nil {
		t.Error("LoadgenCPU missing")
	}
	if res.Interrupted {
		t.Error("Interrupted set on a run that ended by count")
	}

	var buf bytes.Buffer
	if err := res.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var decoded map[string]any
	if err := json.Unmarshal(buf.Bytes(), &decoded); err != nil {
		t.Fatalf("JSON output does not parse: %v\n%s", err, buf.String())
	}
	for _, key := range []string{"requests", "rps", "latency_us", "ok", "over_limit", "errors", "server_cpu", "loadgen_cpu"} {
		if _, ok := decoded[key]; !ok {
			t.Errorf("JSON output lacks %q: %s", key, buf.String())
		}
	}
	if got := decoded["ok"]; got != float64(500) {
		t.Errorf("JSON ok = %v, want 500", got)
	}
	lat, _ := decoded["latency_us"].(map[string]any)
	for _, key := range []string{"p50", "p90", "p99", "p99_9", "max"} {
		if _, ok := lat[key]; !ok {
			t.Errorf("JSON latency_us lacks %q", key)
		}
	}

	buf.Reset()
	if err := res.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"requests    500 in ", "ok 500  over_limit 0  unknown 0  errors 0", "p99.9", "µs per decision", "descriptor  remote_address=10.0.{n}"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text output lacks %q:\n%s", want, buf.String())
		}
	}
}

// scriptedServer answers by the first descriptor's first value, so the
// test knows what each request got, and counts what it answered.
type scriptedServer struct {
	rlsv3.UnimplementedRateLimitServiceServer
	mu       sync.Mutex
	answered map[string]uint64
	domains  map[string]bool
	hits     map[uint32]bool
	// cancel, when set, is called on call number cancelAfter.
	cancelAfter uint64
	cancel      context.CancelFunc
	calls       uint64
}

func newScripted() *scriptedServer {
	return &scriptedServer{answered: map[string]uint64{}, domains: map[string]bool{}, hits: map[uint32]bool{}}
}

func (s *scriptedServer) ShouldRateLimit(_ context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.cancel != nil && s.calls == s.cancelAfter {
		s.cancel()
	}
	s.domains[req.GetDomain()] = true
	s.hits[req.GetHitsAddend()] = true
	v := req.GetDescriptors()[0].GetEntries()[0].GetValue()
	switch v {
	case "k0":
		s.answered["ok"]++
		return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}, nil
	case "k1":
		s.answered["over"]++
		return &rlsv3.RateLimitResponse{
			OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT,
			Statuses:    []*rlsv3.RateLimitResponse_DescriptorStatus{{Code: rlsv3.RateLimitResponse_OVER_LIMIT}},
		}, nil
	case "k2":
		s.answered["unknown"]++
		return &rlsv3.RateLimitResponse{}, nil
	case "k3":
		s.answered["Unavailable"]++
		return nil, status.Error(codes.Unavailable, "scripted")
	default:
		s.answered["InvalidArgument"]++
		return nil, status.Errorf(codes.InvalidArgument, "unexpected value %q", v)
	}
}

func TestRunCountsEveryOutcome(t *testing.T) {
	t.Parallel()
	srv := newScripted()
	addr := serve(t, srv)
	o := testOptions(addr, 400)
	o.Descriptors = []Descriptor{{{"key", "k{n}"}}, {{"other", "x"}}}
	o.Keys = 4
	o.Hits = 7
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	want := srv.answered
	if res.OK != want["ok"] || res.OverLimit != want["over"] || res.Unknown != want["unknown"] ||
		res.Errors["Unavailable"] != want["Unavailable"] || len(res.Errors) != 1 {
		t.Errorf("loadgen counted ok %d over %d unknown %d errors %v; server answered %v",
			res.OK, res.OverLimit, res.Unknown, res.Errors, want)
	}
	if res.Requests != 400 || res.ErrorsTotal != want["Unavailable"] {
		t.Errorf("requests %d errors_total %d, want 400 and %d", res.Requests, res.ErrorsTotal, want["Unavailable"])
	}
	// Every key index was drawn (400 uniform draws over 4 keys all miss
	// one with probability ~1e-50, and the seed is fixed anyway).
	for _, k := range []string{"ok", "over", "unknown", "Unavailable"} {
		if want[k] == 0 {
			t.Errorf("no request drew the key answered %q: %v", k, want)
		}
	}
	if got := res.Histogram.Count(); got != 400-want["Unavailable"] {
		t.Errorf("histogram holds %d, want only the %d answered requests", got, 400-want["Unavailable"])
	}
	if !srv.domains["bench"] || len(srv.domains) != 1 || !srv.hits[7] || len(srv.hits) != 1 {
		t.Errorf("server saw domains %v hits %v, want only bench and 7", srv.domains, srv.hits)
	}
}

func TestRunEndsByDurationWithWarmupAndRate(t *testing.T) {
	t.Parallel()
	floor := &FloorServer{}
	addr := serve(t, floor)
	o := testOptions(addr, 0)
	o.Duration = 200 * time.Millisecond
	o.Warmup = 50 * time.Millisecond
	o.Rate = 500
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	// Only the measured requests are reported; the floor saw the warmup too.
	if res.Requests == 0 || res.OK != res.Requests || res.ErrorsTotal != 0 {
		t.Errorf("requests %d ok %d errors %v, want some, all OK", res.Requests, res.OK, res.Errors)
	}
	if floor.Served() < res.Requests {
		t.Errorf("floor served %d, fewer than the %d reported", floor.Served(), res.Requests)
	}
	// The schedule admits at most rate*duration requests (slot 0 included).
	if limit := uint64(o.Rate*o.Duration.Seconds()) + 1; res.Requests > limit {
		t.Errorf("requests %d, more than the schedule's %d", res.Requests, limit)
	}
}

func TestRunRequestsAndRate(t *testing.T) {
	t.Parallel()
	floor := &FloorServer{}
	addr := serve(t, floor)
	o := testOptions(addr, 60)
	o.Rate = 2000
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 60 || res.OK != 60 || floor.Served() != 60 {
		t.Errorf("requests %d ok %d served %d, want 60 each", res.Requests, res.OK, floor.Served())
	}
}

func TestRunInterrupted(t *testing.T) {
	t.Parallel()
	srv := newScripted()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	srv.cancel, srv.cancelAfter = cancel, 50
	addr := serve(t, srv)
	o := testOptions(addr, 0)
	o.Descriptors = []Descriptor{{{"key", "k0"}}}
	o.Keys = 1
	o.Duration = time.Hour // only the cancellation can end it
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted {
		t.Error("Interrupted not set")
	}
	if res.ErrorsTotal != 0 {
		t.Errorf("errors %v: our own cancellation must not count as the server's error", res.Errors)
	}
	if res.OK == 0 || res.OK > 50+uint64(o.Concurrency) {
		t.Errorf("ok %d, want between 1 and %d", res.OK, 50+o.Concurrency)
	}
}

func TestRunFailsFast(t *testing.T) {
	t.Parallel()
	// A port that was just free: nothing listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close()

	floorAddr := serve(t, &FloorServer{})
	tests := []struct {
		name    string
		edit    func(*Options)
		wantErr string
	}{
		{name: "nothing listening", edit: func(o *Options) { o.Addr, o.Timeout = deadAddr, 300*time.Millisecond }, wantErr: "--addr " + deadAddr},
		{name: "no such pid", edit: func(o *Options) { o.PID = 1 << 30 }, wantErr: "--pid"},
		{name: "invalid options", edit: func(o *Options) { o.Domain = "" }, wantErr: "--domain"},
	}
	for _, tc := range tests {
		o := testOptions(floorAddr, 10)
		tc.edit(&o)
		res, err := Run(t.Context(), o)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: Run = %+v, %v; want an error containing %q", tc.name, res, err, tc.wantErr)
		}
	}
}

// TestRunOverUnixSocket: --addr unix:///path drives a server on a Unix
// socket (Envoy's pipe address), each connection its own.
func TestRunOverUnixSocket(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "fg-loadgen-") // socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := dir + "/rls.sock"
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	floor := &FloorServer{}
	s := grpc.NewServer()
	rlsv3.RegisterRateLimitServiceServer(s, floor)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)

	res, err := Run(t.Context(), testOptions("unix://"+sock, 200))
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 200 || res.ErrorsTotal != 0 || floor.Served() != 200 {
		t.Fatalf("ok %d errors %d served %d, want 200 OK over the socket", res.OK, res.ErrorsTotal, floor.Served())
	}
}
