package refstats

import (
	"context"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// shouldRateLimit is the RateLimitService method whose failures the
// reference counts as call.should_rate_limit errors.
const shouldRateLimit = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"

// method is one gRPC method's stats.
type method struct {
	total        *counter
	responseTime *timer
}

// methodStats returns a full method's stats, made if new.
func (s *Stats) methodStats(full string) *method {
	s.mu.RLock()
	m := s.methods[full]
	s.mu.RUnlock()
	if m != nil {
		return m
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if m = s.methods[full]; m != nil {
		return m
	}
	name := methodName(full)
	m = &method{
		total:        s.counterLocked(serverScope + name + ".total_requests"),
		responseTime: s.timerLocked(serverScope + name + ".response_time"),
	}
	s.methods[full] = m
	return m
}

// methodName is the method part of "/package.Service/Method", or
// "unknown", as the reference names it.
func methodName(full string) string {
	full = strings.TrimPrefix(full, "/")
	if i := strings.Index(full, "/"); i >= 0 {
		return full[i+1:]
	}
	return "unknown"
}

// UnaryServerInterceptor counts every unary call as the reference's server
// does: ratelimit_server.METHOD.total_requests when it starts, and its
// time in whole milliseconds in the ratelimit_server.METHOD.response_time
// timer. A ShouldRateLimit call refused as malformed, or made before any
// config is in force (configLoaded false), counts
// call.should_rate_limit.service_error, as the reference counts the
// requests it refuses (backend failures count redis_error, through the
// engine).
func (s *Stats) UnaryServerInterceptor(configLoaded func() bool) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		m := s.methodStats(info.FullMethod)
		m.total.add(1)
		resp, err := handler(ctx, req)
		m.responseTime.add(time.Since(start).Milliseconds())
		if err != nil && info.FullMethod == shouldRateLimit {
			switch status.Code(err) {
			case codes.InvalidArgument:
				s.serviceErr.add(1)
			case codes.Unavailable:
				if configLoaded != nil && !configLoaded() {
					s.serviceErr.add(1)
				}
			}
		}
		return resp, err
	}
}
