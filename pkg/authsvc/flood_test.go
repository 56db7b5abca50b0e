package authsvc_test

import (
	"fmt"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/memstore"
	"github.com/floodgate/floodgate/pkg/quota"
)

// TestFloodDistinctCredentials sends Check a flood of distinct invalid API
// keys and JWTs, each from its own client address (so each makes a
// failed_auth_limit counter), and of distinct client_ip descriptor values:
// the only per-key state is the backend's, which stays within its bound,
// and the heap after the flood is bounded by that setting (1 KiB a key),
// not by the flood.
func TestFloodDistinctCredentials(t *testing.T) {
	// Not parallel: the heap figure must be this test's alone.
	const maxKeys, flood = 1000, 6000
	var evicted int
	store, err := memstore.New(memstore.Options{MaxKeys: maxKeys, OnEvict: func(n int) { evicted += n }})
	if err != nil {
		t.Fatal(err)
	}
	limit := &quota.Limit{Requests: 3, Unit: time.Minute}
	// Logs at error level: the test keeps every line in memory.
	f := newFixtureLogging(t, testConfig(limit, 0), engine.Options{Limiter: store}, slog.LevelError)
	code := func(r request) codes.Code { return codes.Code(f.check(t, r).GetStatus().GetCode()) }

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range flood {
		peer := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		var r request
		switch i % 3 {
		case 0:
			r = request{path: "/keys/x", headers: key(fmt.Sprintf("guess-%d-0123456789abcdef", i)), peer: peer}
		case 1:
			r = request{path: "/jwt/x", headers: bearer(fmt.Sprintf("eyJhbGciOiJSUzI1NiJ9.eyJuIjoi%d.c2ln", i)), peer: peer}
		default:
			r = request{path: "/docs/x", peer: peer} // a client_ip descriptor per address
		}
		want := codes.Unauthenticated
		if i%3 == 2 {
			want = codes.OK
		}
		if c := code(r); c != want {
			t.Fatalf("request %d (%s from %s): %v, want %v", i, r.path, peer, c, want)
		}
		if n := store.Len(); n > maxKeys {
			t.Fatalf("after %d requests the backend holds %d counters, more than %d", i+1, n, maxKeys)
		}
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n := store.Len(); n < maxKeys/2 {
		t.Errorf("the backend holds %d counters, want most of %d used", n, maxKeys)
	}
	if evicted == 0 {
		t.Error("no counter evicted: the flood did not reach the bound")
	}
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if bound := int64(maxKeys) * 1024; grown > bound {
		t.Errorf("heap grew %d bytes over the flood, more than %d (1 KiB per backend key)", grown, bound)
	}
	t.Logf("%d distinct credentials and addresses: %d counters held, %d evicted, heap grew %.2f MiB", flood, store.Len(), evicted, float64(grown)/(1<<20))
}
