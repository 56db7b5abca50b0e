package engine

import (
	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/quota"
)

// Observer is told of the engine's decisions, for metrics kept apart from
// the engine's own (pkg/refstats keeps envoyproxy/ratelimit's stats with
// one). Every method but Prepare runs on the request path: it must be safe
// for concurrent use, quick, and must not allocate.
type Observer interface {
	// Prepare is called by SetConfig for each limited rule of domain; what
	// it returns is the rule's Limit.ObserverState for every call.
	Prepare(domain string, r *descriptors.Rule) any
	// Decided is called for each descriptor d that limit l applied to,
	// with the backend's answer dec for hit (as the backend gave it: the
	// hits of a rejected request not yet given back); dec is nil when the
	// backend failed, after BackendFailed.
	Decided(domain string, d *Descriptor, l *Limit, hit *quota.Hit, dec *quota.Decision)
	// UnknownDomain is called for a request whose domain no config
	// defines, with its number of descriptors.
	UnknownDomain(domain string, descriptors int)
	// BackendFailed is called when the backend could not decide.
	BackendFailed()
	// ShadowAdmitted is called when a request that the limits reject is
	// admitted only because the engine is in ShadowMode.
	ShadowAdmitted()
}

// ObserverState is what the Observer's Prepare returned for the limit's
// rule, nil for overrides and doors' own limits.
func (l *Limit) ObserverState() any { return l.obs }

// wouldReject says whether the batch would be rejected with no global
// shadow mode: as quota.Rejects, with each hit's shadow its limit's own.
func wouldReject(hits []quota.Hit, decs []quota.Decision, limits []*Limit, slot []int) bool {
	quotas, quotaFits := false, false
	for i, h := range slot {
		if h < 0 {
			continue
		}
		l, fits := limits[i], decs[h].Fits
		switch {
		case l.Shadow:
		case hits[h].Quota:
			quotas = true
			quotaFits = quotaFits || fits
		case !fits:
			return true
		}
	}
	return quotas && !quotaFits
}
