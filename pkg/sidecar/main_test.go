package sidecar_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/sidecar"
)

// syncBuffer is a log sink that tests can read while the sidecar writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type running struct {
	main *sidecar.Main
	logs *syncBuffer
	rls  rlsv3.RateLimitServiceClient
	conn *grpc.ClientConn
}

func start(t *testing.T, args ...string) *running {
	t.Helper()
	return startWith(t, nil, args...)
}

// startWith starts a sidecar on loopback ports, letting configure change
// the Main before Start.
func startWith(t *testing.T, configure func(*sidecar.Main), args ...string) *running {
	t.Helper()
	// A decision waits at most the Redis read timeout, queue and dial
	// included: 5 s keeps a loaded machine running the race detector from
	// failing tests that are not about timeouts (those set their own).
	args = append([]string{"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--reload-interval=20ms", "--redis-read-timeout=5s"}, args...)
	s, err := sidecar.ParseSettings(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("settings: %v", err)
	}
	logs := &syncBuffer{}
	m := sidecar.New(s, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if configure != nil {
		configure(m)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { m.Shutdown() })
	conn, err := grpc.NewClient(m.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &running{main: m, logs: logs, rls: rlsv3.NewRateLimitServiceClient(conn), conn: conn}
}

// writeFile replaces path's content atomically, as editors and the kubelet
// do: written beside, then renamed over it. (Written in place, a reload poll
// could read it half-written, and rightly report that as an error.)
func writeFile(t *testing.T, path, body string) {
	t.Helper()
	tmp := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func limitConfig(domain string, perMinute int) string {
	return "domain: " + domain + "\ndescriptors:\n  - key: k\n    rate_limit: {unit: minute, requests_per_unit: " +
		itoa(perMinute) + "}\n"
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func (r *running) limitOf(t *testing.T, domain string) uint32 {
	t.Helper()
	resp, err := r.rls.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{
		Domain:      domain,
		Descriptors: []*rlv3.RateLimitDescriptor{{Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: "k", Value: "v"}}}},
		HitsAddend:  0,
	})
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	return resp.Statuses[0].GetCurrentLimit().GetRequestsPerUnit()
}

// eventually polls cond until it holds, failing after a generous bound. It
// waits on behaviour, never asserts a duration.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestServeAnswersHealthAndHTTP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), limitConfig("a", 7))
	r := start(t, "--config="+dir)

	if !strings.Contains(r.logs.String(), `"msg":"listening"`) || !strings.Contains(r.logs.String(), `"grpc":"`+r.main.GRPCAddr()+`"`) {
		t.Errorf("no listening line with the bound address in logs:\n%s", r.logs)
	}
	if got := r.limitOf(t, "a"); got != 7 {
		t.Fatalf("limit %d, want 7", got)
	}
	for _, name := range healthNames {
		h, err := healthpb.NewHealthClient(r.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: name})
		if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q: %v %v, want SERVING", name, h, err)
		}
	}
	base := "http://" + r.main.HTTPAddr()
	if code, body := httpGet(t, base+"/healthcheck"); code != http.StatusOK || body != "OK" {
		t.Errorf("GET /healthcheck: %d %q, want 200 \"OK\" as envoyproxy/ratelimit answers", code, body)
	}
	for path, want := range map[string]string{
		"/healthz":       "ok",
		"/readyz":        "ready",
		"/metrics":       `floodgate_ratelimit_total_hits{domain="a",rule="k"} 1`,
		"/debug/config":  `"path": "` + dir + `"`,
		"/debug/config#": `"a"`,
	} {
		code, body := httpGet(t, base+strings.TrimSuffix(path, "#"))
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d, want 200 with %q; body:\n%.2000s", path, code, want, body)
		}
	}
}

// TestPProf: the profiler is served only with --pprof.
func TestPProf(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), limitConfig("a", 7))
	for _, tt := range []struct {
		args []string
		want int
	}{
		{nil, http.StatusNotFound},
		{[]string{"--pprof"}, http.StatusOK},
	} {
		r := start(t, append([]string{"--config=" + dir}, tt.args...)...)
		code, body := httpGet(t, "http://"+r.main.HTTPAddr()+"/debug/pprof/")
		if code != tt.want {
			t.Errorf("%v: GET /debug/pprof/: %d, want %d; body:\n%.500s", tt.args, code, tt.want, body)
		}
		if tt.want == http.StatusOK && !strings.Contains(body, "goroutine") {
			t.Errorf("%v: /debug/pprof/ lists no profiles:\n%.500s", tt.args, body)
		}
	}
}

func TestReloadOnEditAndKeepOnError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "a.yaml")
	writeFile(t, file, limitConfig("a", 7))
	r := start(t, "--config="+file)

	writeFile(t, file, limitConfig("a", 9))
	eventually(t, "the edited limit", func() bool { return r.limitOf(t, "a") == 9 })

	writeFile(t, file, "domain: a\ndescriptors:\n  - key: k\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n")
	eventually(t, "the reload error in the logs", func() bool {
		return strings.Contains(r.logs.String(), "config reload failed")
	})
	if !strings.Contains(r.logs.String(), "a.yaml:4") {
		t.Errorf("reload error does not name file and line:\n%s", r.logs)
	}
	if got := r.limitOf(t, "a"); got != 9 {
		t.Errorf("after a bad edit the limit is %d, want the old 9", got)
	}
	_, body := httpGet(t, "http://"+r.main.HTTPAddr()+"/metrics")
	if !strings.Contains(body, `floodgate_config_reloads_total{result="error",source="limits"} 1`) {
		t.Errorf("reload error not counted:\n%s", body)
	}
}

// TestReloadConfigMapSymlinkSwap reproduces how the kubelet updates a mounted
// ConfigMap: files are links into ..data, and ..data is swapped atomically.
func TestReloadConfigMapSymlinkSwap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	v1 := filepath.Join(dir, "..2026_11_27_v1")
	v2 := filepath.Join(dir, "..2026_11_27_v2")
	for _, v := range []string{v1, v2} {
		if err := os.Mkdir(v, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(v1, "limits.yaml"), limitConfig("cm", 3))
	writeFile(t, filepath.Join(v2, "limits.yaml"), limitConfig("cm", 4))
	must(t, os.Symlink(filepath.Base(v1), filepath.Join(dir, "..data")))
	must(t, os.Symlink(filepath.Join("..data", "limits.yaml"), filepath.Join(dir, "limits.yaml")))
	r := start(t, "--config="+dir)
	if got := r.limitOf(t, "cm"); got != 3 {
		t.Fatalf("limit %d, want 3", got)
	}
	// The swap: a new link, renamed over ..data.
	must(t, os.Symlink(filepath.Base(v2), filepath.Join(dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	eventually(t, "the swapped ConfigMap", func() bool { return r.limitOf(t, "cm") == 4 })
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// healthNames are the grpc.health.v1 names the sidecar answers for: the
// whole server, the rate-limit service, and envoyproxy/ratelimit's name.
var healthNames = []string{"", "envoy.service.ratelimit.v3.RateLimitService", "ratelimit"}

// TestShutdownTurnsHealthAndReadinessOff: once Shutdown begins, and while
// in-flight calls still hold it up, every health name says NOT_SERVING,
// /readyz 503 and /healthcheck 500; then calls are refused and the
// sidecar says it stopped.
func TestShutdownTurnsHealthAndReadinessOff(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), limitConfig("a", 7))
	r := start(t, "--config="+dir, "--shutdown-timeout=1m")
	base := "http://" + r.main.HTTPAddr()

	// A health watch per name: calls in flight that hold the graceful stop
	// (and so the HTTP listener) open until the test ends them.
	ctx, endWatches := context.WithCancel(context.Background())
	defer endWatches()
	watches := map[string]healthpb.Health_WatchClient{}
	for _, name := range healthNames {
		w, err := healthpb.NewHealthClient(r.conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: name})
		if err != nil {
			t.Fatal(err)
		}
		if st, err := w.Recv(); err != nil || st.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q before shutdown: %v (%v), want SERVING", name, st.GetStatus(), err)
		}
		watches[name] = w
	}

	stopped := make(chan error, 1)
	go func() { stopped <- r.main.Shutdown() }()
	for name, w := range watches {
		if st, err := w.Recv(); err != nil || st.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("health %q at shutdown: %v (%v), want NOT_SERVING", name, st.GetStatus(), err)
		}
	}
	for path, want := range map[string]int{"/readyz": http.StatusServiceUnavailable, "/healthcheck": http.StatusInternalServerError} {
		if code, body := httpGet(t, base+path); code != want {
			t.Errorf("GET %s while shutting down: %d %q, want %d", path, code, body, want)
		}
	}
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned (%v) while calls were in flight", err)
	default:
	}

	endWatches()
	if err := <-stopped; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	valid := &rlsv3.RateLimitRequest{
		Domain:      "a",
		Descriptors: []*rlv3.RateLimitDescriptor{{Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: "k", Value: "v"}}}},
	}
	if _, err := r.rls.ShouldRateLimit(context.Background(), valid); err == nil {
		t.Errorf("calls still answered after shutdown")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Errorf("HTTP still answered after shutdown")
	}
	for _, msg := range []string{`"msg":"shutting down"`, `"msg":"stopped"`} {
		if !strings.Contains(r.logs.String(), msg) {
			t.Errorf("no %s line:\n%s", msg, r.logs)
		}
	}
	if strings.Contains(r.logs.String(), "cutting in-flight calls") {
		t.Errorf("in-flight calls were cut before the shutdown timeout:\n%s", r.logs)
	}
	if err := r.main.Shutdown(); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

// TestShutdownBeforeStart: nothing to stop, and no Start after it.
func TestShutdownBeforeStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), limitConfig("a", 7))
	s, err := sidecar.ParseSettings([]string{"--config=" + dir, "--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := sidecar.New(s, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err := m.Shutdown(); err != nil {
		t.Fatalf("Shutdown before Start: %v", err)
	}
	if err := m.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "after Shutdown") {
		t.Fatalf("Start after Shutdown: %v, want an error", err)
	}
	if m.GRPCAddr() != "" || m.HTTPAddr() != "" {
		t.Errorf("Start after Shutdown bound %q and %q", m.GRPCAddr(), m.HTTPAddr())
	}
	if err := m.Shutdown(); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

// TestStartTwice: the second Start fails and leaves the first serving.
func TestStartTwice(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), limitConfig("a", 7))
	r := start(t, "--config="+dir)
	grpcAddr := r.main.GRPCAddr()
	if err := r.main.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("second Start: %v, want an error", err)
	}
	if r.main.GRPCAddr() != grpcAddr {
		t.Errorf("second Start moved the listener from %s to %s", grpcAddr, r.main.GRPCAddr())
	}
	if got := r.limitOf(t, "a"); got != 7 {
		t.Errorf("after a second Start: limit %d, want 7", got)
	}
	if code, _ := httpGet(t, "http://"+r.main.HTTPAddr()+"/readyz"); code != http.StatusOK {
		t.Errorf("after a second Start: /readyz %d", code)
	}
}

// TestDebugConfigWhileReloadHeld: /debug/config (and the API) answer with
// the config in force while a reload is stuck loading.
func TestDebugConfigWhileReloadHeld(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "a.yaml")
	writeFile(t, file, limitConfig("a", 7))
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hold := func(path string) (*descriptors.Config, error) {
		if b, _ := os.ReadFile(file); strings.Contains(string(b), "requests_per_unit: 9}") {
			once.Do(func() { close(entered) })
			<-release
		}
		return descriptors.Load(path, descriptors.Options{})
	}
	r := startWith(t, func(m *sidecar.Main) { sidecar.SetLimitsLoader(m, hold) }, "--config="+dir)
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	writeFile(t, file, limitConfig("a", 9))
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the reload never reached the loader")
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + r.main.HTTPAddr() + "/debug/config")
	if err != nil {
		t.Fatalf("/debug/config while a reload is held: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"requests_per_unit": 7`) || strings.Contains(string(body), `"requests_per_unit": 9`) {
		t.Errorf("/debug/config while held: %d, want 200 with the config in force (7); body:\n%.2000s", resp.StatusCode, body)
	}
	if got := r.limitOf(t, "a"); got != 7 {
		t.Errorf("limit while held: %d, want 7", got)
	}
	close(release)
	eventually(t, "the held reload", func() bool { return r.limitOf(t, "a") == 9 })
}

func TestStartFailsOnBadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "bad.yaml")
	writeFile(t, file, "domain: x\ndescriptors:\n  - key: k\n    ratelimit: {unit: second}\n")
	s, err := sidecar.ParseSettings([]string{"--config=" + file, "--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	err = sidecar.New(s, slog.New(slog.NewJSONHandler(io.Discard, nil))).Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "bad.yaml:4") {
		t.Fatalf("start: %v, want an error naming bad.yaml:4", err)
	}
}

// defaultSettings are serve's settings with no flag and no environment, as
// docs/configuration.md lists them.
func defaultSettings() sidecar.Settings {
	return sidecar.Settings{
		Config:            "./config",
		GRPCAddr:          ":8081",
		HTTPAddr:          ":8080",
		Backend:           "memory",
		LogLevel:          "info",
		Headers:           true,
		ReloadEvery:       500 * time.Millisecond,
		ShutdownWait:      15 * time.Second,
		MaxDescriptors:    64,
		MaxEntries:        32,
		MaxValueBytes:     4096,
		MemoryMaxKeys:     1_000_000,
		NearCacheSize:     100_000,
		NearCacheMaxBytes: 64 << 20,
		DefaultAlgorithm:  "sliding_window",
		NearLimitRatio:    0.8,
		Cache: sidecar.CacheSettings{
			MaxBytes:      268435456,
			MaxEntryBytes: 1 << 20,
			CollapseWait:  150 * time.Millisecond,
		},
		Memcache: sidecar.MemcacheSettings{MaxIdleConns: 2, KeyPrefix: "floodgate:"},
		Redis: sidecar.RedisSettings{
			KeyPrefix:    "floodgate:",
			DialTimeout:  time.Second,
			ReadTimeout:  500 * time.Millisecond,
			WriteTimeout: 500 * time.Millisecond,
			BatchMax:     64,
		},
		Ref: sidecar.RefSettings{
			LogFormat:       "json",
			HeaderStyle:     "ietf",
			HeaderLimit:     "RateLimit-Limit",
			HeaderRemaining: "RateLimit-Remaining",
			HeaderReset:     "RateLimit-Reset",
			ConfigLayout:    "yaml",
		},
		RefStats: sidecar.RefStatsSettings{StatsdProtocol: "tcp", FlushInterval: 10 * time.Second},
	}
}

func TestParseSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want func(s *sidecar.Settings) // changes from defaultSettings
	}{
		{name: "defaults", want: func(s *sidecar.Settings) {}},
		{name: "env fallback", env: map[string]string{"SIDECAR_GRPC_ADDR": "127.0.0.1:9", "SIDECAR_FAIL_OPEN": "true"},
			want: func(s *sidecar.Settings) { s.GRPCAddr, s.FailOpen = "127.0.0.1:9", true }},
		{name: "flag wins over env", args: []string{"--grpc-addr=:1"}, env: map[string]string{"SIDECAR_GRPC_ADDR": ":2"},
			want: func(s *sidecar.Settings) { s.GRPCAddr = ":1" }},
		{name: "redis url selects redis", args: []string{"--redis-url=redis://127.0.0.1:1"},
			want: func(s *sidecar.Settings) { s.Backend, s.Redis.URL = "redis", "redis://127.0.0.1:1" }},
		{name: "batching", args: []string{"--redis-batch-max=1", "--redis-batch-window=50us", "--pprof"},
			want: func(s *sidecar.Settings) {
				s.Redis.BatchMax, s.Redis.BatchWindow, s.PProf = 1, 50*time.Microsecond, true
			}},
		{name: "near-cache bounds", args: []string{"--near-cache-size=10"}, env: map[string]string{"SIDECAR_NEAR_CACHE_MAX_BYTES": "4096"},
			want: func(s *sidecar.Settings) { s.NearCacheSize, s.NearCacheMaxBytes = 10, 4096 }},
		{name: "near-cache off", args: []string{"--near-cache-size=0"},
			want: func(s *sidecar.Settings) { s.NearCacheSize = 0 }},
		{name: "reference modes by flag", args: []string{"--shadow-mode", "--quota-mode", "--response-dynamic-metadata"},
			want: func(s *sidecar.Settings) { s.ShadowMode, s.QuotaMode, s.DynamicMetadata = true, true, true }},
		{name: "reference modes by env", env: map[string]string{"SIDECAR_SHADOW_MODE": "true", "SIDECAR_QUOTA_MODE": "1", "SIDECAR_RESPONSE_DYNAMIC_METADATA": "true"},
			want: func(s *sidecar.Settings) { s.ShadowMode, s.QuotaMode, s.DynamicMetadata = true, true, true }},
		{name: "counting by flag", args: []string{"--count-rejected", "--stop-increment-over-limit", "--default-algorithm=fixed_window", "--near-limit-ratio=0.5"},
			want: func(s *sidecar.Settings) {
				s.CountRejected, s.StopIncrementOverLimit, s.DefaultAlgorithm, s.NearLimitRatio = true, true, "fixed_window", 0.5
			}},
		{name: "counting by env", env: map[string]string{"SIDECAR_COUNT_REJECTED": "true", "SIDECAR_DEFAULT_ALGORITHM": "token_bucket", "SIDECAR_NEAR_LIMIT_RATIO": "1"},
			want: func(s *sidecar.Settings) {
				s.CountRejected, s.DefaultAlgorithm, s.NearLimitRatio = true, "token_bucket", 1
			}},
		{name: "near-limit ratio 0 is the default", args: []string{"--near-limit-ratio=0"}, want: func(s *sidecar.Settings) {}},
		{name: "redis tuning", args: []string{"--redis-url=redis://h:1", "--redis-dial-timeout=3s", "--redis-read-timeout=1s", "--redis-write-timeout=2s", "--redis-pool-size=7", "--redis-key-prefix=x:"},
			want: func(s *sidecar.Settings) {
				s.Backend, s.Redis.URL = "redis", "redis://h:1"
				s.Redis.DialTimeout, s.Redis.ReadTimeout, s.Redis.WriteTimeout = 3*time.Second, time.Second, 2*time.Second
				s.Redis.PoolSize, s.Redis.KeyPrefix = 7, "x:"
			}},
		// Zero means the default: the sidecar's own settings take theirs
		// here; the others are passed on as 0, which their package reads
		// as its default.
		{name: "zero durations", args: []string{"--reload-interval=0", "--shutdown-timeout=0s", "--redis-dial-timeout=0"},
			want: func(s *sidecar.Settings) { s.Redis.DialTimeout = 0 }},
		{name: "zero bounds", args: []string{"--max-descriptors=0", "--memory-max-keys=0", "--near-cache-max-bytes=0", "--redis-batch-max=0"},
			want: func(s *sidecar.Settings) {
				s.MaxDescriptors, s.MemoryMaxKeys, s.NearCacheMaxBytes, s.Redis.BatchMax = 0, 0, 0, 0
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := sidecar.ParseSettings(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if err != nil {
				t.Fatalf("err %v", err)
			}
			want := defaultSettings()
			tt.want(&want)
			diffSettings(t, got, want)
		})
	}
}

// diffSettings reports each field where got and want differ.
func diffSettings(t *testing.T, got, want sidecar.Settings) {
	t.Helper()
	var walk func(prefix string, g, w reflect.Value)
	walk = func(prefix string, g, w reflect.Value) {
		for i := 0; i < g.NumField(); i++ {
			name := prefix + g.Type().Field(i).Name
			if g.Field(i).Kind() == reflect.Struct {
				walk(name+".", g.Field(i), w.Field(i))
				continue
			}
			if gv, wv := g.Field(i).Interface(), w.Field(i).Interface(); gv != wv {
				t.Errorf("%s = %v, want %v", name, gv, wv)
			}
		}
	}
	walk("", reflect.ValueOf(got), reflect.ValueOf(want))
}

func TestParseSettingsErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "nope"},
		{name: "argument", args: []string{"extra"}, wantErr: `unexpected argument "extra"`},
		{name: "bad env value", env: map[string]string{"SIDECAR_FAIL_OPEN": "maybe"}, wantErr: "SIDECAR_FAIL_OPEN"},
		{name: "bad mode env value", env: map[string]string{"SIDECAR_SHADOW_MODE": "sometimes"}, wantErr: "SIDECAR_SHADOW_MODE"},
		{name: "bad duration", args: []string{"--shutdown-timeout=soon"}, wantErr: "shutdown-timeout"},
		{name: "memory with redis", args: []string{"--backend=memory", "--redis-url=redis://h:1"}, wantErr: "--backend=memory contradicts"},
		{name: "memcache without servers", args: []string{"--backend=memcache"}, wantErr: "--backend=memcache needs --memcache-addrs"},
		{name: "memcache with redis", args: []string{"--backend=memcache", "--memcache-addrs=m:11211", "--default-algorithm=fixed_window", "--redis-url=redis://h:1"}, wantErr: "--backend=memcache contradicts"},
		{name: "memcache with sliding windows", args: []string{"--backend=memcache", "--memcache-addrs=m:11211"}, wantErr: "--backend=memcache keeps fixed windows only"},
		{name: "memcache servers on another backend", args: []string{"--memcache-addrs=m:11211"}, wantErr: "--memcache-addrs needs --backend=memcache"},
		{name: "memcache without idle conns", args: []string{"--backend=memcache", "--memcache-addrs=m:11211", "--default-algorithm=fixed_window", "--memcache-max-idle-conns=0"}, wantErr: "--memcache-max-idle-conns=0"},
		{name: "redis without url", args: []string{"--backend=redis"}, wantErr: "--backend=redis needs"},
		{name: "cluster without url", args: []string{"--redis-cluster"}, wantErr: "--redis-cluster needs"},
		{name: "bad backend", args: []string{"--backend=etcd"}, wantErr: "--backend"},
		{name: "bad log level", args: []string{"--log-level=loud"}, wantErr: "--log-level"},
		{name: "bad scheme", args: []string{"--redis-url=http://h:1"}, wantErr: "--redis-url"},
		{name: "sentinel half", args: []string{"--redis-sentinel-master=m"}, wantErr: "--redis-sentinel-addrs"},
		{name: "empty config", args: []string{"--config="}, wantErr: "--config"},
		{name: "negative descriptors", args: []string{"--max-descriptors=-1"}, wantErr: "--max-descriptors=-1: must not be negative"},
		{name: "negative entries", args: []string{"--max-entries=-1"}, wantErr: "--max-entries"},
		{name: "negative value bytes", args: []string{"--max-value-bytes=-1"}, wantErr: "--max-value-bytes"},
		{name: "negative memory keys", args: []string{"--memory-max-keys=-1"}, wantErr: "--memory-max-keys"},
		{name: "negative near-cache", args: []string{"--near-cache-size=-1"}, wantErr: "--near-cache-size=-1: must not be negative (0 turns the near-cache off)"},
		{name: "negative near-cache bytes", args: []string{"--near-cache-max-bytes=-1"}, wantErr: "--near-cache-max-bytes"},
		{name: "negative pool", args: []string{"--redis-pool-size=-1"}, wantErr: "--redis-pool-size"},
		{name: "negative batch max", args: []string{"--redis-batch-max=-1"}, wantErr: "--redis-batch-max"},
		{name: "negative batch window", env: map[string]string{"SIDECAR_REDIS_BATCH_WINDOW": "-1ms"}, wantErr: "--redis-batch-window"},
		{name: "bad default algorithm", args: []string{"--default-algorithm=leaky_bucket"}, wantErr: `--default-algorithm="leaky_bucket": must be sliding_window, fixed_window or token_bucket`},
		{name: "near-limit ratio above 1", args: []string{"--near-limit-ratio=1.2"}, wantErr: "--near-limit-ratio=1.2: must be above 0 and at most 1"},
		{name: "negative near-limit ratio", env: map[string]string{"SIDECAR_NEAR_LIMIT_RATIO": "-0.5"}, wantErr: "--near-limit-ratio=-0.5"},
		{name: "bad near-limit ratio", args: []string{"--near-limit-ratio=most"}, wantErr: "near-limit-ratio"},
		{name: "negative reload interval", args: []string{"--reload-interval=-1s"}, wantErr: "--reload-interval"},
		{name: "negative shutdown timeout", args: []string{"--shutdown-timeout=-1s"}, wantErr: "--shutdown-timeout"},
		{name: "negative dial timeout", args: []string{"--redis-dial-timeout=-1s"}, wantErr: "--redis-dial-timeout"},
		{name: "negative read timeout", args: []string{"--redis-read-timeout=-1s"}, wantErr: "--redis-read-timeout"},
		{name: "negative write timeout", args: []string{"--redis-write-timeout=-1s"}, wantErr: "--redis-write-timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := sidecar.ParseSettings(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
