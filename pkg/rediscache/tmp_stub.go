package rediscache

import (
	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/pkg/cachestore"
)

// Options placeholder (temporary until the Redis store lands).
type Options struct{ KeyPrefix string }

// New placeholder.
func New(c redis.UniversalClient, o Options) (cachestore.Store, error) { panic("todo") }
