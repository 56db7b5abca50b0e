// Package lua holds the Redis scripts that decide rate-limit hits: the three
// algorithms of pkg/quota (fixed_window.lua, sliding_window.lua,
// token_bucket.lua) implemented formula for formula, driven by take.lua,
// which decides a whole batch of hits on one Redis node in one call, all or
// nothing; and refund.lua, which gives back what an admitted batch took when
// another slot of a Redis Cluster rejected the same request.
//
// The scripts read Redis's TIME, so every sidecar sharing a Redis decides on
// one clock; tests pin the time through the first argument instead.
//
// Arguments and replies are built and read by AppendTime, AppendHit and
// ParseTake, so that callers never depend on the ARGV layout.
package lua

import (
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/floodgate/floodgate/pkg/quota"
)

var (
	//go:embed state.lua
	stateSrc string
	//go:embed fixed_window.lua
	fixedWindowSrc string
	//go:embed sliding_window.lua
	slidingWindowSrc string
	//go:embed token_bucket.lua
	tokenBucketSrc string
	//go:embed take.lua
	takeSrc string
	//go:embed refund.lua
	refundSrc string
)

// Take decides a batch of hits on one node (see take.lua for KEYS, ARGV and
// the reply). Run it with Take.Run, which sends EVALSHA and falls back to
// EVAL when the node lacks the script. All three algorithms share this one
// script, so a batch that mixes them is still one call.
var Take = redis.NewScript(stateSrc + fixedWindowSrc + slidingWindowSrc + tokenBucketSrc + takeSrc)

// Refund gives back the hits an admitted Take call took (see refund.lua).
var Refund = redis.NewScript(stateSrc + refundSrc)

// ArgsPerHit is the number of ARGV entries AppendHit adds per hit; a call
// has 1 + ArgsPerHit*len(KEYS) arguments.
const ArgsPerHit = 6

// AppendTime appends the first argument of a call: for Take, the time to
// decide at, or Redis's own clock when pinned is false; for Refund, the now
// that Take replied with (pinned must then be true).
func AppendTime(args []any, now int64, pinned bool) []any {
	if !pinned {
		return append(args, "")
	}
	return append(args, now)
}

// modes are a hit's last argument, as take.lua reads it (state.lua's
// NORMAL, SHADOW, QUOTA, plus 3 × its counting): modes[counting][mode].
var modes = [3][3]string{
	{"0", "1", "2"},
	{"3", "4", "5"},
	{"6", "7", "8"},
}

// The modes of a hit, quota.Hit's Shadow and Quota.
const (
	modeNormal = iota
	modeShadow
	modeQuota
)

// maxExact is 2^53: Lua numbers are doubles, exact for integers up to it.
const maxExact = 1 << 53

// AppendHit appends the arguments of one hit; its key goes at the same
// position in KEYS.
//
// Counts above 2^53 (9e15) are sent as 2^53: a double cannot hold them
// exactly anyway, and capped they cannot overflow the script's integer
// replies. No real limit comes near (Envoy's counts are 32-bit).
//
// The hit's mode follows quota.Hit: shadow when Shadow is set, else quota
// when Quota is set, else normal; and its Counting.
func AppendHit(args []any, h *quota.Hit) []any {
	mode := modeNormal
	switch {
	case h.Shadow:
		mode = modeShadow
	case h.Quota:
		mode = modeQuota
	}
	burst := uint64(0)
	if h.Limit.Algorithm == quota.TokenBucket {
		burst = h.Limit.Burst
	}
	return append(args,
		int64(h.Limit.Algorithm),
		min(h.Limit.Requests, maxExact),
		h.Limit.Unit.Microseconds(),
		min(burst, maxExact),
		min(h.N, maxExact),
		modes[min(int(h.Counting), len(modes)-1)][mode],
	)
}

// ErrReply is wrapped by ParseTake when a reply does not have the shape
// take.lua gives: a script from another version, or not this script at all.
var ErrReply = errors.New("lua: malformed take reply")

// ParseTake reads a Take reply for len(out) hits into out and returns the
// time the script decided at (µs since the Unix epoch).
func ParseTake(reply any, out []quota.Decision) (now int64, err error) {
	vals, ok := reply.([]any)
	if !ok {
		return 0, fmt.Errorf("%w: %T, want an array", ErrReply, reply)
	}
	if len(vals) != 1+3*len(out) {
		return 0, fmt.Errorf("%w: %d values for %d hits", ErrReply, len(vals), len(out))
	}
	now, ok = vals[0].(int64)
	if !ok {
		return 0, fmt.Errorf("%w: time is %T", ErrReply, vals[0])
	}
	for i := range out {
		fits, ok1 := vals[1+3*i].(int64)
		remaining, ok2 := vals[2+3*i].(int64)
		reset, ok3 := vals[3+3*i].(int64)
		if !ok1 || !ok2 || !ok3 || remaining < 0 || reset < 0 {
			return 0, fmt.Errorf("%w: hit %d is %v %v %v", ErrReply, i, vals[1+3*i], vals[2+3*i], vals[3+3*i])
		}
		out[i] = quota.Decision{
			Fits:       fits == 1,
			Remaining:  uint64(remaining),
			ResetAfter: time.Duration(reset) * time.Microsecond,
		}
	}
	return now, nil
}
