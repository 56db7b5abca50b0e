package sidecar_test

import (
	"path/filepath"
	"testing"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/floodgate/floodgate/internal/redistest"
)

// TestRedisUnixSocket: a unix:// --redis-url (the reference's
// REDIS_SOCKET_TYPE=unix) reaches Redis over its socket.
func TestRedisUnixSocket(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "redis.sock")
	redistest.StartServerArgs(t, "--unixsocket", sock, "--unixsocketperm", "700")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), limitConfig("a", 1))
	r := start(t, "--config="+dir, "--redis-url=unix://"+sock, "--near-cache-size=0")
	for i, want := range []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT} {
		resp, err := r.decide("a", "v")
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if resp.OverallCode != want {
			t.Errorf("call %d: %v, want %v", i, resp.OverallCode, want)
		}
	}
}

// TestRedisTLSFiles: --redis-tls-ca trusts a private CA; without it the
// same server's certificate is refused (the system's roots do not know it).
func TestRedisTLSFiles(t *testing.T) {
	t.Parallel()
	redis := redistest.StartTLSServer(t)
	cert, key, ca := redis.TLSFiles()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), limitConfig("a", 5))
	r := start(t, "--config="+dir, "--redis-url="+redis.URL, "--redis-tls-ca="+ca, "--redis-tls-cert="+cert, "--redis-tls-key="+key)
	if resp, err := r.decide("a", "v"); err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Fatalf("with the CA: %v %v", resp, err)
	}
	bad := start(t, "--config="+dir, "--redis-url="+redis.URL)
	if _, err := bad.decide("a", "v"); err == nil {
		t.Errorf("without the CA: answered, want UNAVAILABLE (the certificate is not trusted)")
	}
}
