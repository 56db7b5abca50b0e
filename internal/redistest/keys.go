package redistest

import (
	"context"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Keys lists every key under prefix with the node that holds it: on each
// master of a cluster, or on the one Redis (SCAN: fine in a test, which
// audits what a store left behind).
func Keys(t testing.TB, c redis.UniversalClient, prefix string) map[string]*redis.Client {
	t.Helper()
	out := map[string]*redis.Client{}
	var mu sync.Mutex
	scan := func(ctx context.Context, n *redis.Client) error {
		it := n.Scan(ctx, 0, prefix+"*", 500).Iterator()
		for it.Next(ctx) {
			mu.Lock()
			out[it.Val()] = n
			mu.Unlock()
		}
		return it.Err()
	}
	ctx := context.Background()
	var err error
	if cc, ok := c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, scan)
	} else {
		err = scan(ctx, c.(*redis.Client))
	}
	if err != nil {
		t.Fatalf("redistest: scanning %s*: %v", prefix, err)
	}
	return out
}
