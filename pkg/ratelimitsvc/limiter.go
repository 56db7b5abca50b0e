package ratelimitsvc

import (
	"context"

	"github.com/floodgate/floodgate/pkg/quota"
)

// Limiter is the counter store the service decides with. Backends (memory,
// Redis) implement it in their own packages.
type Limiter interface {
	// Take decides hits as one all-or-nothing batch and writes out[i] for
	// hits[i] (len(out) == len(hits)). If quota.Rejects(hits, out), nothing is
	// taken from any counter; otherwise every hit whose decision Fits is
	// taken. Hits that share a Key are decided in order, each seeing the
	// ones before it. An error means no decision was made.
	Take(ctx context.Context, hits []quota.Hit, out []quota.Decision) error
	// Ping reports whether the backend can decide now (for /readyz).
	Ping(ctx context.Context) error
}
