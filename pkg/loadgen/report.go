package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// WriteJSON writes r as one JSON object followed by a newline.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write json result: %w", err)
	}
	return nil
}

// WriteText writes r for people: one fact per line, latencies in
// microseconds.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	switch r.Mode {
	case ModeCheck:
		fmt.Fprintf(&b, "target      %s mode=check keys=%d concurrency=%d connections=%d",
			r.Addr, r.Keys, r.Concurrency, r.Connections)
	case ModeExtProc:
		fmt.Fprintf(&b, "target      %s mode=extproc cache_load=%s body=%dB keys=%d concurrency=%d connections=%d",
			r.Addr, r.CacheLoad, r.BodyBytes, r.Keys, r.Concurrency, r.Connections)
	default:
		fmt.Fprintf(&b, "target      %s domain=%s keys=%d concurrency=%d connections=%d",
			r.Addr, r.Domain, r.Keys, r.Concurrency, r.Connections)
	}
	if r.Sequential {
		b.WriteString(" sequential")
	}
	if r.TargetRate > 0 {
		fmt.Fprintf(&b, " rate=%g/s", r.TargetRate)
	}
	b.WriteByte('\n')
	for _, d := range r.Descriptors {
		fmt.Fprintf(&b, "descriptor  %s\n", d)
	}
	if r.Request != "" {
		fmt.Fprintf(&b, "request     %s\n", r.Request)
	}
	if len(r.Headers) > 0 {
		fmt.Fprintf(&b, "headers     %s\n", strings.Join(r.Headers, " "))
	}
	if r.Interrupted {
		b.WriteString("interrupted before the end; the numbers cover what ran\n")
	}
	fmt.Fprintf(&b, "requests    %d in %.3fs = %.0f req/s\n", r.Requests, r.ElapsedSeconds, r.RPS)
	l := r.LatencyMicros
	fmt.Fprintf(&b, "latency µs  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  (mean %.1f, min %.1f)\n",
		l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean, l.Min)
	switch r.Mode {
	case ModeExtProc:
		fmt.Fprintf(&b, "answers     streams %d  hits %d  bodies_sent %d  skipped %d  unexpected %d  errors %d\n",
			r.OK, r.Hits, r.BodiesSent, r.Skipped, r.Unknown, r.ErrorsTotal)
	case ModeCheck:
		fmt.Fprintf(&b, "answers     ok %d  over_limit %d  denied %d  errors %d\n",
			r.OK, r.OverLimit, r.DeniedTotal, r.ErrorsTotal)
		for _, name := range sortedKeys(r.Denied) {
			fmt.Fprintf(&b, "denied      %s %d\n", name, r.Denied[name])
		}
	default:
		fmt.Fprintf(&b, "answers     ok %d  over_limit %d  unknown %d  errors %d\n",
			r.OK, r.OverLimit, r.Unknown, r.ErrorsTotal)
	}
	names := make([]string, 0, len(r.Errors))
	for name := range r.Errors {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fmt.Fprintf(&b, "error       %s %d\n", name, r.Errors[name])
	}
	if c := r.ServerCPU; c != nil {
		fmt.Fprintf(&b, "server CPU  pid %d: user %.0f µs + sys %.0f µs = %.2f µs per decision\n",
			c.PID, c.UserMicros, c.SystemMicros, c.MicrosPerRequest)
	}
	if c := r.LoadgenCPU; c != nil {
		fmt.Fprintf(&b, "loadgen CPU user %.0f µs + sys %.0f µs = %.2f µs per request\n",
			c.UserMicros, c.SystemMicros, c.MicrosPerRequest)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}

func sortedKeys(m map[string]uint64) []string {
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
