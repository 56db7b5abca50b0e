package sidecar_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/floodgate/floodgate/pkg/sidecar"
)

// TestReferenceStats: with --statsd-addr and --reference-metrics-addr, a
// few calls with known outcomes reach statsd and the Prometheus listener
// under envoyproxy/ratelimit's names.
func TestReferenceStats(t *testing.T) {
	t.Parallel()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	var mu sync.Mutex
	counters := map[string]int{} // deltas summed
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			for _, line := range strings.Split(strings.TrimSpace(string(buf[:n])), "\n") {
				if name, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(v, "|c") {
					n, _ := strconv.Atoi(strings.TrimSuffix(v, "|c"))
					counters[name] += n
				}
			}
			mu.Unlock()
		}
	}()
	file := filepath.Join(t.TempDir(), "rl.yaml")
	writeFile(t, file, "domain: rl\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 2, algorithm: fixed_window}\n")
	r := start(t, "--config="+file, "--statsd-addr="+pc.LocalAddr().String(), "--statsd-protocol=udp",
		"--stats-flush-interval=50ms", "--reference-metrics-addr=127.0.0.1:0")
	for range 3 {
		if _, err := r.rls.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{
			Domain:      "rl",
			Descriptors: []*rlv3.RateLimitDescriptor{{Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: "k", Value: "v"}}}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]int{
		"ratelimit.service.config_load_success":           1,
		"ratelimit_server.ShouldRateLimit.total_requests": 3,
		"ratelimit.service.rate_limit.rl.k.total_hits":    3,
		"ratelimit.service.rate_limit.rl.k.within_limit":  2,
		"ratelimit.service.rate_limit.rl.k.near_limit":    1,
		"ratelimit.service.rate_limit.rl.k.over_limit":    1,
	}
	eventually(t, "the statsd counters", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for k, v := range want {
			if counters[k] != v {
				return false
			}
		}
		return len(counters) == len(want)
	})
	_, body := httpGet(t, "http://"+r.main.RefMetricsAddr()+"/metrics")
	for _, line := range []string{
		`ratelimit_service_config_load_success 1`,
		`ratelimit_service_total_requests{grpc_method="ShouldRateLimit"} 3`,
		`ratelimit_service_response_time_seconds_count{grpc_method="ShouldRateLimit"} 3`,
		`ratelimit_service_rate_limit_total_hits{domain="rl",key1="k"} 3`,
		`ratelimit_service_rate_limit_within_limit{domain="rl",key1="k"} 2`,
		`ratelimit_service_rate_limit_near_limit{domain="rl",key1="k"} 1`,
		`ratelimit_service_rate_limit_over_limit{domain="rl",key1="k"} 1`,
	} {
		if !strings.Contains(body, "\n"+line+"\n") {
			t.Errorf("reference metrics lack %s", line)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
	// A reload that fails counts config_load_error.
	writeFile(t, file, "domain: rl\ndescriptors:\n  - key: k\n    ratelimit: {}\n")
	eventually(t, "config_load_error", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return counters["ratelimit.service.config_load_error"] == 1
	})
}

// TestBadMapperFailsStart: a --prometheus-mapper-yaml that does not load
// stops start-up, naming the file.
func TestBadMapperFailsStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "rl.yaml")
	writeFile(t, cfg, limitConfig("rl", 5))
	mapper := filepath.Join(dir, "mapper.yaml")
	writeFile(t, mapper, "mappings:\n  - match: \"a.*\"\n    name: \"x\"\n    labelz: {}\n")
	s, err := sidecar.ParseSettings([]string{"--config=" + cfg, "--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0",
		"--reference-metrics-addr=127.0.0.1:0", "--prometheus-mapper-yaml=" + mapper}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	err = sidecar.New(s, slog.New(slog.NewJSONHandler(io.Discard, nil))).Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "--prometheus-mapper-yaml") || !strings.Contains(err.Error(), mapper) {
		t.Fatalf("start: %v, want an error naming --prometheus-mapper-yaml and %s", err, mapper)
	}
}

func TestReferenceStatsSettingsErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--statsd-addr=127.0.0.1:8125", "--statsd-protocol=sctp"}, `--statsd-protocol "sctp": want tcp or udp`},
		{[]string{"--statsd-addr=statsd"}, `--statsd-addr "statsd"`},
		{[]string{"--prometheus-mapper-yaml=m.yaml"}, "--prometheus-mapper-yaml needs --reference-metrics-addr"},
		{[]string{"--stats-flush-interval=-1s"}, "--stats-flush-interval=-1s: must not be negative"},
		{[]string{"--near-limit-ratio=1.5"}, "--near-limit-ratio=1.5: must be above 0 and at most 1"},
	} {
		_, err := sidecar.ParseSettings(tt.args, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%v: err %v, want one containing %q", tt.args, err, tt.wantErr)
		}
	}
}
