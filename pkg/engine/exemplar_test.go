package engine_test

import (
	"context"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/floodgate/floodgate/pkg/engine"
)

type traceKey struct{}

// traceOf is a TraceID extractor reading the test's own context key, as
// the sidecar's reads OTel's span context.
func traceOf(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(traceKey{}).(string)
	return id, ok
}

// latency is the decision histogram as gathered.
func latency(t *testing.T, f *fixture) *dto.Histogram {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "floodgate_ratelimit_decision_seconds" {
			return mf.GetMetric()[0].GetHistogram()
		}
	}
	t.Fatal("floodgate_ratelimit_decision_seconds not gathered")
	return nil
}

func exemplarIDs(h *dto.Histogram) []string {
	var ids []string
	for _, b := range h.GetBucket() {
		if ex := b.GetExemplar(); ex != nil {
			for _, l := range ex.GetLabel() {
				if l.GetName() == "trace_id" {
					ids = append(ids, l.GetValue())
				}
			}
		}
	}
	return ids
}

// decideUntilTimed decides until the histogram has counted a call (one in
// 8 is timed, drawn at random), bounded in calls.
func decideUntilTimed(t *testing.T, f *fixture, ctx context.Context) *dto.Histogram {
	t.Helper()
	for i := 0; i < 2000; i++ {
		var out engine.Outcome
		if err := f.eng.Decide(ctx, &engine.Request{Domain: "api", Descriptors: []engine.Descriptor{d("free", "x")}}, &out); err != nil {
			t.Fatal(err)
		}
		if h := latency(t, f); h.GetSampleCount() > 0 {
			return h
		}
	}
	t.Fatal("no call timed in 2000")
	return nil
}

func TestLatencyExemplarNamesTheTrace(t *testing.T) {
	t.Parallel()
	f := newFixture(t, engine.Options{TraceID: traceOf})
	const id = "4bf92f3577b34da6a3ce929d0e0e4736"
	h := decideUntilTimed(t, f, context.WithValue(context.Background(), traceKey{}, id))
	if ids := exemplarIDs(h); len(ids) != 1 || ids[0] != id {
		t.Errorf("exemplars = %q, want one naming %s", ids, id)
	}
}

func TestNoExemplarWithoutATrace(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string]engine.Options{
		"no extractor":          {},
		"extractor, no sampled": {TraceID: traceOf},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, opts)
			h := decideUntilTimed(t, f, context.Background())
			if ids := exemplarIDs(h); len(ids) != 0 {
				t.Errorf("exemplars = %q, want none", ids)
			}
		})
	}
}

// The top buckets show a stalled backend instead of lumping it in +Inf.
func TestLatencyBucketsReachSeconds(t *testing.T) {
	t.Parallel()
	f := newFixture(t, engine.Options{})
	h := decideUntilTimed(t, f, context.Background())
	var bounds []float64
	for _, b := range h.GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
	}
	for _, want := range []float64{0.25, 0.5, 1, 2.5, 5} {
		found := false
		for _, b := range bounds {
			found = found || b == want
		}
		if !found {
			t.Errorf("no bucket at %gs: %v", want, bounds)
		}
	}
}
