package statuspage

import (
	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/engine"
	"github.com/floodgate/floodgate/pkg/quota"
)

// Observers combines engine observers, since the engine takes one: each
// method calls primary, then every other in order. Only primary's Prepare
// state becomes the rules' Limit.ObserverState, so the others must keep no
// state through it (a Tracker keeps none). Nil observers are left out; with
// none it returns nil, with only one that one.
func Observers(primary engine.Observer, others ...engine.Observer) engine.Observer {
	var rest []engine.Observer
	for _, o := range others {
		if o != nil {
			rest = append(rest, o)
		}
	}
	switch {
	case primary == nil && len(rest) == 0:
		return nil
	case primary == nil:
		primary, rest = rest[0], rest[1:]
	}
	if len(rest) == 0 {
		return primary
	}
	return &fanout{primary: primary, rest: rest}
}

type fanout struct {
	primary engine.Observer
	rest    []engine.Observer
}

func (f *fanout) Prepare(domain string, r *descriptors.Rule) any {
	st := f.primary.Prepare(domain, r)
	for _, o := range f.rest {
		o.Prepare(domain, r)
	}
	return st
}

func (f *fanout) Decided(domain string, d *engine.Descriptor, l *engine.Limit, hit *quota.Hit, dec *quota.Decision) {
	f.primary.Decided(domain, d, l, hit, dec)
	for _, o := range f.rest {
		o.Decided(domain, d, l, hit, dec)
	}
}

func (f *fanout) UnknownDomain(domain string, n int) {
	f.primary.UnknownDomain(domain, n)
	for _, o := range f.rest {
		o.UnknownDomain(domain, n)
	}
}

func (f *fanout) BackendFailed() {
	f.primary.BackendFailed()
	for _, o := range f.rest {
		o.BackendFailed()
	}
}

func (f *fanout) ShadowAdmitted() {
	f.primary.ShadowAdmitted()
	for _, o := range f.rest {
		o.ShadowAdmitted()
	}
}
