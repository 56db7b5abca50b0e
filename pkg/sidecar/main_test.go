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
	"strings"
	"sync"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/floodgate/floodgate/pkg/redisstore"
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
	args = append([]string{"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--reload-interval=20ms"}, args...)
	s, err := sidecar.ParseSettings(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("settings: %v", err)
	}
	logs := &syncBuffer{}
	m := sidecar.New(s, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
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
	h, err := healthpb.NewHealthClient(r.conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h, err)
	}
	base := "http://" + r.main.HTTPAddr()
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
	if !strings.Contains(body, `floodgate_config_reloads_total{result="error"} 1`) {
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

func TestShutdownTurnsHealthAndReadinessOff(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), limitConfig("a", 7))
	r := start(t, "--config="+dir)
	if err := r.main.Shutdown(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	valid := &rlsv3.RateLimitRequest{
		Domain:      "a",
		Descriptors: []*rlv3.RateLimitDescriptor{{Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: "k", Value: "v"}}}},
	}
	if _, err := r.rls.ShouldRateLimit(context.Background(), valid); err == nil {
		t.Errorf("calls still answered after shutdown")
	}
	if !strings.Contains(r.logs.String(), `"msg":"stopped"`) {
		t.Errorf("no stopped line:\n%s", r.logs)
	}
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

func TestParseSettings(t *testing.T) {
	t.Parallel()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
		check   func(s sidecar.Settings) bool
	}{
		{name: "defaults", check: func(s sidecar.Settings) bool {
			return s.Config == "./config" && s.GRPCAddr == ":8081" && s.HTTPAddr == ":8080" && s.Backend == "memory" && s.LogLevel == "info"
		}},
		{name: "env fallback", env: map[string]string{"SIDECAR_GRPC_ADDR": "127.0.0.1:9", "SIDECAR_FAIL_OPEN": "true"},
			check: func(s sidecar.Settings) bool { return s.GRPCAddr == "127.0.0.1:9" && s.FailOpen }},
		{name: "flag wins over env", args: []string{"--grpc-addr=:1"}, env: map[string]string{"SIDECAR_GRPC_ADDR": ":2"},
			check: func(s sidecar.Settings) bool { return s.GRPCAddr == ":1" }},
		{name: "redis url selects redis", args: []string{"--redis-url=redis://127.0.0.1:1"},
			check: func(s sidecar.Settings) bool { return s.Backend == "redis" }},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "nope"},
		{name: "bad env value", env: map[string]string{"SIDECAR_FAIL_OPEN": "maybe"}, wantErr: "SIDECAR_FAIL_OPEN"},
		{name: "bad duration", args: []string{"--shutdown-timeout=soon"}, wantErr: "shutdown-timeout"},
		{name: "memory with redis", args: []string{"--backend=memory", "--redis-url=redis://h:1"}, wantErr: "--backend=memory contradicts"},
		{name: "redis without url", args: []string{"--backend=redis"}, wantErr: "--backend=redis needs"},
		{name: "cluster without url", args: []string{"--redis-cluster"}, wantErr: "--redis-cluster needs"},
		{name: "bad backend", args: []string{"--backend=etcd"}, wantErr: "--backend"},
		{name: "bad log level", args: []string{"--log-level=loud"}, wantErr: "--log-level"},
		{name: "bad scheme", args: []string{"--redis-url=http://h:1"}, wantErr: "--redis-url"},
		{name: "sentinel half", args: []string{"--redis-sentinel-master=m"}, wantErr: "--redis-sentinel-addrs"},
		{name: "negative bound", args: []string{"--max-descriptors=0"}, wantErr: "--max-descriptors"},
		{name: "batching", args: []string{"--redis-batch-max=1", "--redis-batch-window=50us", "--pprof"},
			check: func(s sidecar.Settings) bool {
				return s.Redis.BatchMax == 1 && s.Redis.BatchWindow == 50*time.Microsecond && s.PProf
			}},
		{name: "batching defaults", check: func(s sidecar.Settings) bool {
			return s.Redis.BatchMax == redisstore.DefaultBatchMax && s.Redis.BatchWindow == 0 && !s.PProf
		}},
		{name: "batch max zero", args: []string{"--redis-batch-max=0"}, wantErr: "--redis-batch-max"},
		{name: "negative batch window", env: map[string]string{"SIDECAR_REDIS_BATCH_WINDOW": "-1ms"}, wantErr: "--redis-batch-window"},
		{name: "near-cache bounds", args: []string{"--near-cache-size=10"}, env: map[string]string{"SIDECAR_NEAR_CACHE_MAX_BYTES": "4096"},
			check: func(s sidecar.Settings) bool { return s.NearCacheSize == 10 && s.NearCacheMaxBytes == 4096 }},
		{name: "near-cache defaults", check: func(s sidecar.Settings) bool {
			return s.NearCacheSize == 100_000 && s.NearCacheMaxBytes == 64<<20
		}},
		{name: "near-cache max bytes zero", args: []string{"--near-cache-max-bytes=0"}, wantErr: "--near-cache-max-bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := sidecar.ParseSettings(tt.args, env(tt.env), io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("err %v", err)
			}
			if !tt.check(s) {
				t.Fatalf("settings %+v", s)
			}
		})
	}
}
