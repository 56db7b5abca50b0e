package refstats_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/floodgate/floodgate/internal/backendtest"
	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/memstore"
	"github.com/floodgate/floodgate/pkg/ratelimitsvc"
	"github.com/floodgate/floodgate/pkg/refstats"
)

const config = `
domain: rl
descriptors:
  - key: foo
    rate_limit: {unit: minute, requests_per_unit: 5, algorithm: fixed_window}
  - key: category
    value: shadow
    shadow_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1, algorithm: fixed_window}
  - key: source_cluster
    value: proxy
    descriptors:
      - key: destination_cluster
        detailed_metric: true
        rate_limit: {unit: minute, requests_per_unit: 2, algorithm: fixed_window}
  - key: user
    value_to_metric: true
    rate_limit: {unit: minute, requests_per_unit: 10, algorithm: fixed_window}
  - key: free
    rate_limit: {unlimited: true}
`

// start is on a minute boundary.
var start = time.Unix(1_700_000_000-1_700_000_000%3600, 0)

// rig is a RateLimitService on loopback gRPC whose engine and server feed
// Stats.
type rig struct {
	stats  *refstats.Stats
	client rlsv3.RateLimitServiceClient
}

func newRig(t *testing.T, opts refstats.Options) *rig {
	t.Helper()
	stats := refstats.New(opts)
	clock := backendtest.NewClock(start)
	store, err := memstore.New(memstore.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(engine.Options{Limiter: store, Observer: stats})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := descriptors.Parse("rl.yaml", []byte(config), descriptors.Options{})
	if err != nil {
		t.Fatal(err)
	}
	eng.SetConfig(cfg)
	stats.ConfigLoaded(true)
	svc, err := ratelimitsvc.New(eng, ratelimitsvc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(stats.UnaryServerInterceptor(func() bool { return eng.Config() != nil })))
	rlsv3.RegisterRateLimitServiceServer(srv, svc)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	stats.Start()
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
		stats.Close()
	})
	return &rig{stats: stats, client: rlsv3.NewRateLimitServiceClient(conn)}
}

func desc(kv ...string) *rlv3.RateLimitDescriptor {
	d := &rlv3.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &rlv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

// calls makes the requests whose stats the tests know: 15 ShouldRateLimit
// calls, one of them malformed.
func (r *rig) calls(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	call := func(n int, domain string, ds ...*rlv3.RateLimitDescriptor) {
		for range n {
			if _, err := r.client.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: domain, Descriptors: ds}); err != nil {
				t.Fatal(err)
			}
		}
	}
	call(7, "rl", desc("foo", "a"))                                               // 5 within (the 5th near), 2 over
	call(3, "rl", desc("category", "shadow"))                                     // 1 within and near, 2 over in shadow mode
	call(3, "rl", desc("source_cluster", "proxy", "destination_cluster", "mock")) // 2 within (the 2nd near), 1 over
	call(1, "rl", desc("user", "alice"), desc("free", "x"))                       // value_to_metric: 1 within
	call(1, "nope", desc("a", "b"), desc("c", "d"))                               // 2 domain_not_found
	if _, err := r.client.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "rl"}); err == nil {
		t.Fatal("a request without descriptors was answered")
	}
}

// wantCounters are the statsd counters the calls make, as the reference
// names them.
var wantCounters = map[string]uint64{
	"ratelimit.service.config_load_success":                                                      1,
	"ratelimit.service.call.should_rate_limit.service_error":                                     1,
	"ratelimit_server.ShouldRateLimit.total_requests":                                            16,
	"ratelimit.service.rate_limit.nope.domain_not_found":                                         2,
	"ratelimit.service.rate_limit.rl.foo.total_hits":                                             7,
	"ratelimit.service.rate_limit.rl.foo.within_limit":                                           5,
	"ratelimit.service.rate_limit.rl.foo.near_limit":                                             1,
	"ratelimit.service.rate_limit.rl.foo.over_limit":                                             2,
	"ratelimit.service.rate_limit.rl.category_shadow.total_hits":                                 3,
	"ratelimit.service.rate_limit.rl.category_shadow.within_limit":                               1,
	"ratelimit.service.rate_limit.rl.category_shadow.near_limit":                                 1,
	"ratelimit.service.rate_limit.rl.category_shadow.over_limit":                                 2,
	"ratelimit.service.rate_limit.rl.category_shadow.shadow_mode":                                2,
	"ratelimit.service.rate_limit.rl.source_cluster_proxy.destination_cluster_mock.total_hits":   3,
	"ratelimit.service.rate_limit.rl.source_cluster_proxy.destination_cluster_mock.within_limit": 2,
	"ratelimit.service.rate_limit.rl.source_cluster_proxy.destination_cluster_mock.near_limit":   1,
	"ratelimit.service.rate_limit.rl.source_cluster_proxy.destination_cluster_mock.over_limit":   1,
	"ratelimit.service.rate_limit.rl.user_alice.total_hits":                                      1,
	"ratelimit.service.rate_limit.rl.user_alice.within_limit":                                    1,
}

const responseTime = "ratelimit_server.ShouldRateLimit.response_time"

// lines collects statsd lines: counter deltas summed by name, timer
// values counted.
type lines struct {
	mu       sync.Mutex
	counters map[string]uint64
	timers   map[string]int
	bad      []string
}

func newLines() *lines { return &lines{counters: map[string]uint64{}, timers: map[string]int{}} }

func (l *lines) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	name, rest, ok := strings.Cut(line, ":")
	value, typ, ok2 := strings.Cut(rest, "|")
	n, err := strconv.ParseUint(value, 10, 64)
	switch {
	case !ok || !ok2 || err != nil:
		l.bad = append(l.bad, line)
	case typ == "c":
		l.counters[name] += n
	case typ == "ms":
		l.timers[name]++
	default:
		l.bad = append(l.bad, line)
	}
}

// wait waits until the counters are what the calls make and every call
// was timed.
func (l *lines) wait(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		done := len(l.counters) == len(wantCounters) && l.timers[responseTime] == 16
		for name, want := range wantCounters {
			done = done && l.counters[name] == want
		}
		got := map[string]uint64{}
		for k, v := range l.counters {
			got[k] = v
		}
		timed, bad := l.timers[responseTime], l.bad
		l.mu.Unlock()
		if len(bad) > 0 {
			t.Fatalf("lines that are not statsd counters or timers: %q", bad)
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			var diff []string
			for name, want := range wantCounters {
				if got[name] != want {
					diff = append(diff, name+": got "+strconv.FormatUint(got[name], 10)+", want "+strconv.FormatUint(want, 10))
				}
			}
			for name, v := range got {
				if _, ok := wantCounters[name]; !ok {
					diff = append(diff, name+": got "+strconv.FormatUint(v, 10)+", want none")
				}
			}
			sort.Strings(diff)
			t.Fatalf("statsd counters differ:\n%s\n%s timed %d calls, want 16", strings.Join(diff, "\n"), responseTime, timed)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStatsdUDP(t *testing.T) {
	t.Parallel()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	got := newLines()
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n > 1432 {
				got.add("datagram of " + strconv.Itoa(n) + " bytes")
			}
			for _, line := range strings.Split(strings.TrimSuffix(string(buf[:n]), "\n"), "\n") {
				got.add(line)
			}
		}
	}()
	r := newRig(t, refstats.Options{Statsd: refstats.StatsdOptions{Addr: pc.LocalAddr().String(), Protocol: "udp", FlushInterval: 50 * time.Millisecond}})
	r.calls(t)
	got.wait(t)
}

func TestStatsdTCP(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := newLines()
	go serveTCP(ln, got)
	r := newRig(t, refstats.Options{Statsd: refstats.StatsdOptions{Addr: ln.Addr().String(), FlushInterval: 50 * time.Millisecond}})
	r.calls(t)
	got.wait(t)
}

func serveTCP(ln net.Listener, got *lines) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				got.add(sc.Text())
			}
		}()
	}
}

// TestStatsdAwayThenBack: with no statsd listening, calls are answered as
// usual; once it listens, the stats kept meanwhile arrive.
func TestStatsdAwayThenBack(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := newRig(t, refstats.Options{Statsd: refstats.StatsdOptions{Addr: addr, FlushInterval: 50 * time.Millisecond}})
	r.calls(t)                         // answered although statsd is away
	time.Sleep(200 * time.Millisecond) // a few failed flushes
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening again on statsd's loopback port (another process took it meanwhile?): %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	got := newLines()
	go serveTCP(ln, got)
	got.wait(t)
}

// wantProm are the series the calls make on the reference's Prometheus
// listener with its default mapping.
var wantProm = []string{
	`ratelimit_service_config_load_success 1`,
	`ratelimit_service_should_rate_limit_error{err_type="service_error"} 1`,
	`ratelimit_service_total_requests{grpc_method="ShouldRateLimit"} 16`,
	`ratelimit_service_response_time_seconds_count{grpc_method="ShouldRateLimit"} 16`,
	`ratelimit_service_rate_limit_nope_domain_not_found 2`,
	`ratelimit_service_rate_limit_total_hits{domain="rl",key1="foo"} 7`,
	`ratelimit_service_rate_limit_within_limit{domain="rl",key1="foo"} 5`,
	`ratelimit_service_rate_limit_near_limit{domain="rl",key1="foo"} 1`,
	`ratelimit_service_rate_limit_over_limit{domain="rl",key1="foo"} 2`,
	`ratelimit_service_rate_limit_total_hits{domain="rl",key1="category_shadow"} 3`,
	`ratelimit_service_rate_limit_within_limit{domain="rl",key1="category_shadow"} 1`,
	`ratelimit_service_rate_limit_near_limit{domain="rl",key1="category_shadow"} 1`,
	`ratelimit_service_rate_limit_over_limit{domain="rl",key1="category_shadow"} 2`,
	`ratelimit_service_rate_limit_shadow_mode{domain="rl",key1="category_shadow"} 2`,
	`ratelimit_service_rate_limit_total_hits{domain="rl",key1="source_cluster_proxy",key2="destination_cluster_mock"} 3`,
	`ratelimit_service_rate_limit_within_limit{domain="rl",key1="source_cluster_proxy",key2="destination_cluster_mock"} 2`,
	`ratelimit_service_rate_limit_near_limit{domain="rl",key1="source_cluster_proxy",key2="destination_cluster_mock"} 1`,
	`ratelimit_service_rate_limit_over_limit{domain="rl",key1="source_cluster_proxy",key2="destination_cluster_mock"} 1`,
	`ratelimit_service_rate_limit_total_hits{domain="rl",key1="user_alice"} 1`,
	`ratelimit_service_rate_limit_within_limit{domain="rl",key1="user_alice"} 1`,
}

func TestPrometheus(t *testing.T) {
	t.Parallel()
	r := newRig(t, refstats.Options{Prometheus: refstats.DefaultMapper()})
	srv := httptest.NewServer(r.stats.Handler())
	t.Cleanup(srv.Close)
	r.calls(t)
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %v\n%s", resp.StatusCode, err, b)
	}
	got := map[string]bool{}
	var ours []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "ratelimit_") {
			got[line] = true
			if !strings.HasPrefix(line, "ratelimit_service_response_time_seconds_") {
				ours = append(ours, line)
			}
		}
	}
	for _, w := range wantProm {
		if !got[w] {
			t.Errorf("missing %s", w)
		}
	}
	// Nothing else: no zero series, no unmapped stat but domain_not_found.
	if len(ours) != len(wantProm)-1 {
		t.Errorf("got %d ratelimit_ series besides the timer, want %d:\n%s", len(ours), len(wantProm)-1, strings.Join(ours, "\n"))
	}
	for _, w := range []string{
		`# TYPE ratelimit_service_response_time_seconds histogram`,
		`ratelimit_service_response_time_seconds_bucket{grpc_method="ShouldRateLimit",le="+Inf"} 16`,
		`# TYPE ratelimit_service_rate_limit_total_hits counter`,
	} {
		if !strings.Contains(string(b), w+"\n") {
			t.Errorf("missing %s", w)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("exposition:\n%s", b)
	}
}

// TestNoConfigIsServiceError: a ShouldRateLimit call before any config is
// in force counts service_error, as the reference counts "no rate limit
// configuration loaded".
func TestNoConfigIsServiceError(t *testing.T) {
	t.Parallel()
	stats := refstats.New(refstats.Options{})
	clock := backendtest.NewClock(start)
	store, err := memstore.New(memstore.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(engine.Options{Limiter: store, Observer: stats})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := ratelimitsvc.New(eng, ratelimitsvc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	intercept := stats.UnaryServerInterceptor(func() bool { return eng.Config() != nil })
	info := &grpc.UnaryServerInfo{FullMethod: "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"}
	_, err = intercept(context.Background(), &rlsv3.RateLimitRequest{Domain: "rl", Descriptors: []*rlv3.RateLimitDescriptor{desc("foo", "a")}}, info,
		func(ctx context.Context, req any) (any, error) {
			return svc.ShouldRateLimit(ctx, req.(*rlsv3.RateLimitRequest))
		})
	if err == nil {
		t.Fatal("answered without a config")
	}
	got := stats.Counters()
	if got["ratelimit.service.call.should_rate_limit.service_error"] != 1 || got["ratelimit_server.ShouldRateLimit.total_requests"] != 1 || len(got) != 2 {
		t.Errorf("counters %v", got)
	}
}
