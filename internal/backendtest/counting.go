package backendtest

import (
	"time"

	"github.com/floodgate/floodgate/pkg/quota"
)

// unless is a hit counted as the reference counts with
// STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT (quota.UnlessOtherOver).
func unless(name string, l quota.Limit, n uint64) quota.Hit {
	return counted(hit(name, l, n), quota.UnlessOtherOver)
}

// quotaAlways is a quota-mode hit taken in full whatever it decides: the
// debit after a response on a quota_mode rule with overdraw, or under the
// reference's counting.
func quotaAlways(name string, l quota.Limit, n uint64) quota.Hit {
	return counted(quotaHit(name, l, n), quota.Always)
}

// spreadCounted is spread with a counting.
func spreadCounted(tag, name string, l quota.Limit, n uint64, c quota.Counting) quota.Hit {
	return counted(spread(tag, name, l, n, false), c)
}

// batch is a step of several hits.
func batch(advance time.Duration, hits []quota.Hit, want ...quota.Decision) step {
	return step{advance: advance, hits: hits, want: want}
}

// countingScenarios are the scenarios of hits counted other than all or
// nothing: overdraw rules (a debt), the reference's counting (every hit
// counts, rejected ones too) and its STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT,
// and the reference's token-quota examples replayed hit by hit. Every
// number is worked out by hand in the comments; Base is 20 s into its
// minute (40 s left) and 800 s into its hour.
func countingScenarios() []scenario {
	fw1, fw2, fw3, fw5 := fixed(1, minute), fixed(2, minute), fixed(3, minute), fixed(5, minute)
	sw2, sw10 := sliding(2, minute), sliding(10, minute)
	tb100h := bucket(100, time.Hour, 0) // one token per 36 s
	hour := time.Hour

	// The reference's /tokenquota route (examples/envoy/proxy.yaml): a
	// check with hits_addend 0 before the request, the debit of 1 after
	// it, on quota_mode rule service_2 (2 a minute). check and debit are
	// one request's two calls.
	check := func(l quota.Limit, want quota.Decision) step {
		return one(0, quotaHit("service_2", l, 0), want)
	}
	debit := func(l quota.Limit, want quota.Decision) step {
		return one(0, quotaAlways("service_2", l, 1), want)
	}
	// The /multiservice-tokenquota route: checks on service_1 (1 a
	// minute) and service_2 (2 a minute) in one request, the debit on
	// the one that served it.
	checkBoth := func(advance time.Duration, s1, s2 quota.Decision) step {
		return batch(advance, []quota.Hit{quotaHit("service_1", fw1, 0), quotaHit("service_2", fw2, 0)}, s1, s2)
	}
	debitOn := func(name string, l quota.Limit, want quota.Decision) step {
		return one(0, quotaAlways(name, l, 1), want)
	}

	return []scenario{
		{
			name: "overdraw/fixed window: the charge is taken in full, the debt ends with the window",
			steps: []step{
				one(0, always("f", fw3, 2), ok(1, 40*sec)),
				// 2 + 5 > 3: over, yet taken: the count is 7.
				one(0, always("f", fw3, 5), over(40*sec)),
				// A check sees 7 > 3: refused until the window ends.
				one(0, hit("f", fw3, 0), over(40*sec)),
				one(39*sec, hit("f", fw3, 0), over(1*sec)),
				// A new window starts at 0 whatever the debt.
				one(1*sec, hit("f", fw3, 0), ok(3, 60*sec)),
			},
		},
		{
			name: "overdraw/sliding window: the previous window's weight carries the debt",
			steps: []step{
				one(0, always("s", sw10, 4), ok(6, 40*sec)),
				// 4 + 16 > 10: over, taken: cur = 20. A hit of 16 > 10
				// never fits: both windows must pass, 40 + 60 s.
				one(0, always("s", sw10, 16), over(100*sec)),
				// A check waits until 20 × (60 - e)/60 <= 10 in the next
				// window: e = 30 s, so 40 + 30 s.
				one(0, hit("s", sw10, 0), over(70*sec)),
				// Next window: prev = 20, cur = 0; the same 30 s remain.
				one(40*sec, hit("s", sw10, 0), over(30*sec)),
				// 20 × 30/60 = 10 <= 10: out of debt, nothing left.
				one(30*sec, hit("s", sw10, 0), ok(0, 30*sec)),
				// A hit of 1 needs 20 × (60 - e)/60 <= 9: e = 33 s, 3 s on.
				one(0, hit("s", sw10, 1), over(3*sec)),
				// Two windows after the charge, nothing of it is left.
				one(30*sec, hit("s", sw10, 0), ok(10, 60*sec)),
			},
		},
		{
			name: "overdraw/token bucket owing 50 at 100 an hour refuses for 30 minutes",
			steps: []step{
				// 100 - 60 = 40 left; full again after 60 × 36 s.
				one(0, always("b", tb100h, 60), ok(40, 2160*sec)),
				// 40 < 90: over, taken: -50 tokens. Another 90 would need
				// 140 tokens: 140 × 36 s.
				one(0, always("b", tb100h, 90), over(5040*sec)),
				// A check waits out the debt: 50 × 36 s = 30 minutes.
				one(0, hit("b", tb100h, 0), over(1800*sec)),
				one(10*minute, hit("b", tb100h, 0), over(1200*sec)),
				// 0 tokens: out of debt, empty, full in an hour.
				one(20*minute, hit("b", tb100h, 0), ok(0, hour)),
				// One token 36 s later, taken: empty again.
				one(36*sec, always("b", tb100h, 1), ok(0, hour)),
			},
		},
		{
			name: "overdraw/taken when another limit rejects the batch, and in shadow mode",
			steps: []step{
				one(0, hit("n", fw1, 1), ok(0, 40*sec)),
				// n rejects the batch; o's charge of 2 is taken anyway.
				batch(0, []quota.Hit{hit("n", fw1, 1), always("o", fw5, 2)}, over(40*sec), ok(3, 40*sec)),
				one(0, hit("o", fw5, 0), ok(3, 40*sec)),
				// A shadow overdraw hit never rejects, but its 2 + 4 > 5
				// is taken: the count is 6.
				one(0, counted(shadow("o", fw5, 4), quota.Always), over(40*sec)),
				one(0, hit("o", fw5, 0), over(40*sec)),
			},
		},
		{
			name: "reference counting/every hit counts, rejected ones too",
			steps: []step{
				one(0, always("r", fw3, 1), ok(2, 40*sec)),
				one(0, always("r", fw3, 1), ok(1, 40*sec)),
				one(0, always("r", fw3, 1), ok(0, 40*sec)),
				// 4 > 3: over, counted.
				one(0, always("r", fw3, 1), over(40*sec)),
				// hits_addend 0 sees 4 > 3: over until the window ends.
				one(0, always("r", fw3, 0), over(40*sec)),
				// At exactly the limit a check is not over: 2 > 2 is false.
				one(0, always("e", fw2, 2), ok(0, 40*sec)),
				one(0, always("e", fw2, 0), ok(0, 40*sec)),
				// r rejects the request; x still counts its hit.
				batch(0, []quota.Hit{always("x", fw5, 1), always("r", fw3, 1)}, ok(4, 40*sec), over(40*sec)),
				one(0, hit("x", fw5, 0), ok(4, 40*sec)),
				// A new window forgets it all.
				one(40*sec, always("r", fw3, 1), ok(2, 60*sec)),
			},
		},
		{
			name: "reference counting/stop increment: a rejected request adds nothing to its others",
			steps: []step{
				// Both fit: both counted.
				batch(0, []quota.Hit{unless("y", fw5, 1), unless("z", fw1, 1)}, ok(4, 40*sec), ok(0, 40*sec)),
				// z is over: z counts (2), y does not.
				batch(0, []quota.Hit{unless("y", fw5, 1), unless("z", fw1, 1)}, ok(3, 40*sec), over(40*sec)),
				batch(0, []quota.Hit{hit("y", fw5, 0), hit("z", fw1, 0)}, ok(4, 40*sec), over(40*sec)),
				one(0, unless("y", fw5, 2), ok(2, 40*sec)),
				// The same key twice: the 4 is decided after the 2 (2 + 4 >
				// 5, over), so the 2 is not taken, and what is written is
				// the 4 alone: 1 left.
				batch(0, []quota.Hit{unless("k", fw5, 2), unless("k", fw5, 4)}, ok(3, 40*sec), over(40*sec)),
				one(0, hit("k", fw5, 0), ok(1, 40*sec)),
			},
		},
		{
			name: "all/same key twice, taken in full",
			steps: []step{
				// The second sees the first's 2: 2 + 2 > 3, over, taken: 4.
				batch(0, []quota.Hit{always("k", fw3, 2), always("k", fw3, 2)}, ok(1, 40*sec), over(40*sec)),
				one(0, hit("k", fw3, 0), over(40*sec)),
			},
		},
		{
			name: "token quota/the reference's /tokenquota on a fixed window",
			steps: []step{
				check(fw2, ok(2, 40*sec)), debit(fw2, ok(1, 40*sec)),
				check(fw2, ok(1, 40*sec)), debit(fw2, ok(0, 40*sec)),
				// 2 > 2 is false: the third request passes; its debit
				// makes 3 > 2.
				check(fw2, ok(0, 40*sec)), debit(fw2, over(40*sec)),
				// The fourth is refused.
				check(fw2, over(40*sec)),
				one(40*sec, quotaHit("service_2", fw2, 0), ok(2, 60*sec)),
			},
		},
		{
			name: "token quota/the reference's /tokenquota on a sliding window",
			steps: []step{
				check(sw2, ok(2, 40*sec)), debit(sw2, ok(1, 40*sec)),
				check(sw2, ok(1, 40*sec)), debit(sw2, ok(0, 40*sec)),
				// cur = 3 after the debit; another 1 needs 3 × (60 - e)/60
				// <= 1 next window: e = 40 s, so 40 + 40 s.
				check(sw2, ok(0, 40*sec)), debit(sw2, over(80*sec)),
				// A check needs 3 × (60 - e)/60 <= 2: e = 20 s, 40 + 20 s.
				check(sw2, over(60*sec)),
				one(40*sec, quotaHit("service_2", sw2, 0), over(20*sec)),
				// 3 × 40/60 = 2 <= 2.
				one(20*sec, quotaHit("service_2", sw2, 0), ok(0, 40*sec)),
			},
		},
		{
			name: "token quota/the reference's /multiservice-tokenquota",
			steps: []step{
				checkBoth(0, ok(1, 40*sec), ok(2, 40*sec)), debitOn("service_1", fw1, ok(0, 40*sec)),
				checkBoth(0, ok(0, 40*sec), ok(2, 40*sec)), debitOn("service_1", fw1, over(40*sec)),
				// service_1 is over (2 > 1); service_2 serves.
				checkBoth(0, over(40*sec), ok(2, 40*sec)), debitOn("service_2", fw2, ok(1, 40*sec)),
				checkBoth(0, over(40*sec), ok(1, 40*sec)), debitOn("service_2", fw2, ok(0, 40*sec)),
				checkBoth(0, over(40*sec), ok(0, 40*sec)), debitOn("service_2", fw2, over(40*sec)),
				// Both over: the sixth request is refused.
				checkBoth(0, over(40*sec), over(40*sec)),
				checkBoth(40*sec, ok(1, 60*sec), ok(2, 60*sec)),
			},
		},
		{
			// Keys with tags of their own: on a cluster each is its own
			// call, and what one call took that the request does not take
			// is refunded.
			name: "spread/counting across tags",
			steps: []step{
				batch(0, []quota.Hit{spreadCounted("t1", "a", fw5, 1, quota.UnlessOtherOver), spreadCounted("t2", "b", fw1, 1, quota.UnlessOtherOver)},
					ok(4, 40*sec), ok(0, 40*sec)),
				// b is over: a's call took its hit and is refunded; b counts (2).
				batch(0, []quota.Hit{spreadCounted("t1", "a", fw5, 1, quota.UnlessOtherOver), spreadCounted("t2", "b", fw1, 1, quota.UnlessOtherOver)},
					ok(3, 40*sec), over(40*sec)),
				batch(0, []quota.Hit{spread("t1", "a", fw5, 0, false), spread("t2", "b", fw1, 0, false)}, ok(4, 40*sec), over(40*sec)),
				// Counted whatever: a is taken though b rejects (b: 3).
				batch(0, []quota.Hit{spreadCounted("t1", "a", fw5, 1, quota.Always), spreadCounted("t2", "b", fw1, 1, quota.Always)},
					ok(3, 40*sec), over(40*sec)),
				one(0, spread("t1", "a", fw5, 0, false), ok(3, 40*sec)),
				// A normal hit is refunded, the overdraw one stays (b: 4).
				batch(0, []quota.Hit{spread("t1", "a", fw5, 1, false), spreadCounted("t2", "b", fw1, 1, quota.Always)},
					ok(2, 40*sec), over(40*sec)),
				one(0, spread("t1", "a", fw5, 0, false), ok(3, 40*sec)),
			},
		},
	}
}
