package sidecar_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/floodgate/floodgate/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

func (r *running) decide(domain, value string) (*rlsv3.RateLimitResponse, error) {
	return r.rls.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{
		Domain:      domain,
		Descriptors: []*rlv3.RateLimitDescriptor{{Entries: []*rlv3.RateLimitDescriptor_Entry{{Key: "k", Value: value}}}},
	})
}

// TestRedisBackendOutageAndRecovery: two sidecars share one Redis and one
// limit; when Redis stops they answer UNAVAILABLE (or OK with --fail-open)
// and /readyz fails; when it returns they recover by themselves.
func TestRedisBackendOutageAndRecovery(t *testing.T) {
	t.Parallel()
	redis := redistest.StartServer(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), limitConfig("a", 5))
	prefix := "--redis-key-prefix=" + t.Name() + ":"
	one := start(t, "--config="+dir, "--redis-url="+redis.URL, prefix)
	two := start(t, "--config="+dir, "--redis-url="+redis.URL, prefix, "--fail-open")

	admitted := 0
	for i := 0; i < 10; i++ {
		for _, r := range []*running{one, two} {
			resp, err := r.decide("a", "shared")
			if err != nil {
				t.Fatal(err)
			}
			if resp.OverallCode == rlsv3.RateLimitResponse_OK {
				admitted++
			}
		}
	}
	if admitted != 5 {
		t.Fatalf("two sidecars admitted %d, want the one global limit 5", admitted)
	}
	// Each sidecar now holds the exhausted counter in its near-cache.
	_, metrics := httpGet(t, "http://"+one.main.HTTPAddr()+"/metrics")
	if !strings.Contains(metrics, "floodgate_nearcache_entries 1\n") ||
		!strings.Contains(metrics, "floodgate_nearcache_bytes ") || strings.Contains(metrics, "floodgate_nearcache_bytes 0\n") {
		t.Errorf("near-cache size not reported as one entry of some bytes:\n%s", grepLines(metrics, "floodgate_nearcache"))
	}

	redis.Stop()
	eventually(t, "UNAVAILABLE from the fail-closed sidecar", func() bool {
		_, err := one.decide("a", "other")
		return status.Code(err) == codes.Unavailable
	})
	if resp, err := two.decide("a", "other"); err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Fatalf("fail-open sidecar: %v %v, want OK", resp, err)
	}
	if code, body := httpGet(t, "http://"+one.main.HTTPAddr()+"/readyz"); code != 503 || !strings.Contains(body, "backend") {
		t.Errorf("/readyz during the outage: %d %q, want 503 naming the backend", code, body)
	}
	_, metrics = httpGet(t, "http://"+two.main.HTTPAddr()+"/metrics")
	if !strings.Contains(metrics, "floodgate_ratelimit_fail_open_total") || strings.Contains(metrics, "floodgate_ratelimit_fail_open_total 0") {
		t.Errorf("fail-open not counted")
	}

	if err := redis.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "recovery after Redis returns", func() bool {
		resp, err := one.decide("a", "fresh")
		return err == nil && resp.OverallCode == rlsv3.RateLimitResponse_OK
	})
	eventually(t, "/readyz after recovery", func() bool {
		code, _ := httpGet(t, "http://"+one.main.HTTPAddr()+"/readyz")
		return code == 200
	})
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
