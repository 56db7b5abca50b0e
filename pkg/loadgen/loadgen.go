// Package loadgen drives any Envoy RLS v3 server
// (envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit), with
// ModeCheck any ext_authz v3 server (envoy.service.auth.v3.Authorization/
// Check), or with ModeExtProc any ext_proc v3 server (envoy.service.
// ext_proc.v3.ExternalProcessor/Process, one stream per HTTP request), over
// gRPC for benchmarks, and measures latency, outcomes and, optionally, the
// server's CPU time per decision.
//
// The generator is built to cost little, because on a small machine it
// shares the cores with the server it measures: requests are marshalled once
// per key index before the run, replies are not unmarshalled beyond their
// overall_code, and latencies go into per-worker fixed-size histograms.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// MaxKeys bounds Options.Keys: every key index gets its own precomputed
// request (tens of bytes each), and ten million of them is already a large
// fraction of a small machine's memory.
const MaxKeys = 10_000_000

// Options configures a run. DefaultOptions gives the defaults each field
// documents; Domain and Descriptors have none.
type Options struct {
	// Addr is the server's host:port. Default 127.0.0.1:8081.
	Addr string
	// Mode is ModeRateLimit (the default), ModeCheck or ModeExtProc.
	Mode string
	// Domain is the rate-limit domain of every request. Required in
	// ModeRateLimit; not used in ModeCheck.
	Domain string
	// Descriptors are the request's descriptors, in order. At least one in
	// ModeRateLimit; not used in ModeCheck.
	Descriptors []Descriptor
	// Keys is the number of distinct key indexes that KeyPlaceholder (and
	// LinePlaceholder) takes, drawn uniformly per request from 0..Keys-1.
	// Default 1; more than 1 needs a template with a placeholder.
	Keys int
	// Sequential takes key indexes in order instead of drawing them: the
	// i-th request of a phase (from 0) gets i mod Keys, so a run of at most
	// Keys requests sends each request once.
	Sequential bool

	// Method, Host, Path, Headers and Source make the Check request
	// (ModeCheck), and Method, Host, Path and Headers the request headers
	// of ModeExtProc; each may hold KeyPlaceholder and LinePlaceholder.
	// Defaults GET, api.example.com, /v1/things, no header, 127.0.0.1.
	Method  string
	Host    string
	Path    string
	Headers []Header
	// Source is the client's IP address, attributes.source.address.
	Source string
	// KeyLines are the values LinePlaceholder takes: line n for key index
	// n (the --key-file).
	KeyLines []string
	// CacheLoad is ModeExtProc's load: CacheHit (the default; key indexes
	// as in the other modes) or CacheMiss (a new number for KeyPlaceholder
	// in every request).
	CacheLoad string
	// BodyBytes is the length of the upstream's response body that
	// ModeExtProc plays (sent when a mode_override asks). Default 1024.
	BodyBytes int
	// MaxAge is the response's Cache-Control max-age in ModeExtProc.
	// Default 60s.
	MaxAge time.Duration
	// Concurrency is the number of requests in flight (one worker each).
	// Default 32.
	Concurrency int
	// Connections is the number of gRPC client connections; workers are
	// spread over them round robin. At most Concurrency. Default 4.
	Connections int
	// Duration ends the run: no request starts after it. Zero means no time
	// limit, which needs Requests. Default 10s.
	Duration time.Duration
	// Requests ends the run after that many requests; 0 means no count
	// limit. With Duration too, whichever comes first ends the run.
	Requests uint64
	// Hits is the request's hits_addend; 0 leaves it unset (the server
	// counts 1).
	Hits uint32
	// Rate is the target requests per second, spread evenly over time; 0
	// sends as fast as Concurrency allows. With a rate, latency is measured
	// from each request's scheduled time, so falling behind shows up in the
	// latency instead of being hidden (no coordinated omission).
	Rate float64
	// Warmup is run before the measurement and then discarded. Default 0.
	Warmup time.Duration
	// Timeout bounds each request. Default 5s. Connecting to Addr at the
	// start must also succeed within it.
	Timeout time.Duration
	// PID, when positive, is a process (normally the server) whose CPU time
	// is read from /proc before and after the measurement.
	PID int
	// Seed seeds the key draws; 0 picks a random seed.
	Seed uint64
}

// DefaultOptions returns Options with every default filled in.
func DefaultOptions() Options {
	return Options{
		Addr:        "127.0.0.1:8081",
		Mode:        ModeRateLimit,
		Keys:        1,
		Method:      "GET",
		Host:        "api.example.com",
		Path:        "/v1/things",
		Source:      "127.0.0.1",
		CacheLoad:   CacheHit,
		BodyBytes:   1024,
		MaxAge:      time.Minute,
		Concurrency: 32,
		Connections: 4,
		Duration:    10 * time.Second,
		Timeout:     5 * time.Second,
	}
}

// Validate checks o; each error names the command-line flag at fault.
func (o *Options) Validate() error {
	var errs []error
	if o.Addr == "" {
		errs = append(errs, errors.New("--addr: empty, want host:port"))
	}
	switch o.Mode {
	case ModeRateLimit, "": // "": Options made before there were modes
		errs = append(errs, o.validateRateLimit()...)
	case ModeCheck:
		errs = append(errs, o.validateCheck()...)
	case ModeExtProc:
		errs = append(errs, o.validateExtProc()...)
	default:
		errs = append(errs, fmt.Errorf("--mode %q: want %s, %s or %s", o.Mode, ModeRateLimit, ModeCheck, ModeExtProc))
	}
	errs = append(errs, o.validateRest()...)
	return errors.Join(errs...)
}

// validateRateLimit checks the options of ModeRateLimit.
func (o *Options) validateRateLimit() []error {
	var errs []error
	if o.Domain == "" {
		errs = append(errs, errors.New("--domain: required"))
	}
	templated := false
	if len(o.Descriptors) == 0 {
		errs = append(errs, errNoDescriptor)
	}
	for i, d := range o.Descriptors {
		if len(d) == 0 {
			errs = append(errs, fmt.Errorf("--descriptor #%d: no entries", i+1))
		}
		for _, e := range d {
			if e.Key == "" {
				errs = append(errs, fmt.Errorf("--descriptor %q: an entry has an empty key", d.String()))
			}
		}
		templated = templated || d.templated()
	}
	switch {
	case o.Keys < 1 || o.Keys > MaxKeys:
		errs = append(errs, fmt.Errorf("--keys %d: want 1 to %d", o.Keys, MaxKeys))
	case o.Keys > 1 && !templated:
		errs = append(errs, fmt.Errorf("--keys %d: no --descriptor contains %s, so every key would be the same", o.Keys, KeyPlaceholder))
	}
	if len(o.Headers) > 0 || len(o.KeyLines) > 0 {
		errs = append(errs, errors.New("--header and --key-file: only with --mode check or extproc"))
	}
	if o.CacheLoad == CacheMiss {
		errs = append(errs, errors.New("--cache-load: only with --mode extproc"))
	}
	return errs
}

// validateRest checks the options every mode shares but --addr.
func (o *Options) validateRest() []error {
	var errs []error
	if o.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("--concurrency %d: want at least 1", o.Concurrency))
	}
	switch {
	case o.Connections < 1:
		errs = append(errs, fmt.Errorf("--connections %d: want at least 1", o.Connections))
	case o.Concurrency >= 1 && o.Connections > o.Concurrency:
		errs = append(errs, fmt.Errorf("--connections %d: more than --concurrency %d, so some would carry no requests", o.Connections, o.Concurrency))
	}
	switch {
	case o.Duration < 0:
		errs = append(errs, fmt.Errorf("--duration %v: negative", o.Duration))
	case o.Duration == 0 && o.Requests == 0:
		errs = append(errs, errors.New("--duration and --requests: one must be positive, or the run would never end"))
	}
	if o.Rate < 0 || math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0) {
		errs = append(errs, fmt.Errorf("--rate %v: want a finite number >= 0", o.Rate))
	}
	if o.Warmup < 0 {
		errs = append(errs, fmt.Errorf("--warmup %v: negative", o.Warmup))
	}
	if o.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout %v: want a positive duration", o.Timeout))
	}
	if o.PID < 0 {
		errs = append(errs, fmt.Errorf("--pid %d: negative", o.PID))
	}
	return errs
}

// Latency summarises the latency of the answered requests, in microseconds.
type Latency struct {
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

// CPUReport is the CPU time a process spent during the measurement.
type CPUReport struct {
	// PID is the process measured (this one, for the generator).
	PID int `json:"pid"`
	// UserMicros and SystemMicros are the CPU time spent.
	UserMicros   float64 `json:"user_us"`
	SystemMicros float64 `json:"sys_us"`
	// MicrosPerRequest is (user+system)/requests: for the server, its CPU
	// cost per rate-limit decision (one ShouldRateLimit call).
	MicrosPerRequest float64 `json:"us_per_request"`
}

// Result is the outcome of a run; it is also the --json output.
type Result struct {
	Addr string `json:"addr"`
	// Mode is set to ModeCheck for a Check run and ModeExtProc for a
	// Process run; absent, ShouldRateLimit.
	Mode        string   `json:"mode,omitempty"`
	Domain      string   `json:"domain"`
	Descriptors []string `json:"descriptors"`
	// Request is a Check or Process run's "METHOD host path"; Headers the
	// names of its headers (not the values, which may be credentials).
	Request string   `json:"request,omitempty"`
	Headers []string `json:"headers,omitempty"`
	// CacheLoad and BodyBytes are a Process run's load and response body
	// length.
	CacheLoad   string  `json:"cache_load,omitempty"`
	BodyBytes   int     `json:"body_bytes,omitempty"`
	Keys        int     `json:"keys"`
	Sequential  bool    `json:"sequential,omitempty"`
	Concurrency int     `json:"concurrency"`
	Connections int     `json:"connections"`
	TargetRate  float64 `json:"target_rate,omitempty"`
	// ElapsedSeconds is the measured wall time, warmup excluded.
	ElapsedSeconds float64 `json:"elapsed_s"`
	// Requests counts every request that completed: OK + OverLimit +
	// Unknown + DeniedTotal + ErrorsTotal.
	Requests uint64 `json:"requests"`
	// RPS is Requests / ElapsedSeconds.
	RPS float64 `json:"rps"`
	// LatencyMicros covers answered requests (not errors), so that fast
	// failures cannot make a server look quick.
	LatencyMicros Latency `json:"latency_us"`
	// OK, OverLimit and Unknown count answers by overall_code. A Check's
	// answer counts by its status.code: OK, RESOURCE_EXHAUSTED as
	// OverLimit (429), any other code in Denied.
	OK        uint64 `json:"ok"`
	OverLimit uint64 `json:"over_limit"`
	Unknown   uint64 `json:"unknown"`
	// Denied counts Check answers (not RPC errors) by their status.code
	// name, e.g. "Unauthenticated" (401), "PermissionDenied" (403).
	Denied      map[string]uint64 `json:"denied,omitempty"`
	DeniedTotal uint64            `json:"denied_total,omitempty"`
	// A Process run counts each completed stream in OK, and an answer
	// Envoy would refuse where it came (a stream cut short) in Unknown.
	// Of the OK streams, Hits were answered with an immediate_response,
	// BodiesSent had their response body asked for (and sent), and
	// Skipped were told to skip the response headers.
	Hits       uint64 `json:"hits,omitempty"`
	BodiesSent uint64 `json:"bodies_sent,omitempty"`
	Skipped    uint64 `json:"skipped,omitempty"`
	// Errors counts failed requests by gRPC code name (e.g. "Unavailable").
	Errors      map[string]uint64 `json:"errors"`
	ErrorsTotal uint64            `json:"errors_total"`
	// ServerCPU is set when Options.PID was.
	ServerCPU *CPUReport `json:"server_cpu,omitempty"`
	// LoadgenCPU is this generator's own CPU time.
	LoadgenCPU *CPUReport `json:"loadgen_cpu,omitempty"`
	// Interrupted is true when the context ended the run early.
	Interrupted bool `json:"interrupted,omitempty"`

	// Histogram holds every latency recorded, for callers who want more
	// than the summary.
	Histogram *Histogram `json:"-"`
}

// worker is one closed loop of requests; its fields are touched by its
// goroutine only, until the phase ends and they are summed.
type worker struct {
	conn      *grpc.ClientConn
	rng       *rand.Rand
	timer     *time.Timer
	req       rawRequest
	resp      rawResponse
	checkResp rawCheckResponse
	procResp  rawProcessingResponse
	hist      *Histogram
	ok        uint64
	overLimit uint64
	unknown   uint64
	denied    map[codes.Code]uint64
	errs      map[codes.Code]uint64
	// ModeExtProc's counts.
	hits, bodies, skipped uint64
}

func (w *worker) reset() {
	w.hist.Reset()
	w.ok, w.overLimit, w.unknown = 0, 0, 0
	w.hits, w.bodies, w.skipped = 0, 0, 0
	clear(w.denied)
	clear(w.errs)
}

// runner holds what the phases of one run share.
type runner struct {
	opts    Options
	check   bool
	extproc bool
	reqs    *requestSet
	msgs    *extprocMessages // ModeExtProc
	// unique counts CacheMiss requests over every phase, from a random
	// start, so that no two requests (nor, very likely, two runs) share a
	// number.
	unique  atomic.Uint64
	workers []*worker
}

// Run connects to o.Addr, runs the warmup and then the measurement, and
// returns the result. It always ends by itself: by Duration, by Requests,
// or when ctx ends (then with Interrupted set). Each request is bounded by
// Timeout.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	check, extproc := o.Mode == ModeCheck, o.Mode == ModeExtProc
	keys := 1
	var (
		reqs *requestSet
		msgs *extprocMessages
		err  error
	)
	switch {
	case extproc:
		if templated, _ := o.checkTemplated(); templated && o.CacheLoad != CacheMiss {
			keys = o.Keys
		}
		if msgs, err = buildExtProcMessages(&o, keys); err == nil {
			reqs = msgs.requests
		}
	case check:
		if templated, _ := o.checkTemplated(); templated {
			keys = o.Keys
		}
		reqs, err = buildCheckRequests(&o, keys)
	default:
		for _, d := range o.Descriptors {
			if d.templated() {
				keys = o.Keys
			}
		}
		reqs, err = buildRequests(o.Domain, o.Descriptors, o.Hits, keys)
	}
	if err != nil {
		return nil, err
	}
	if o.PID > 0 {
		if _, err := ProcCPU(o.PID); err != nil {
			return nil, fmt.Errorf("--pid %d: %w", o.PID, err)
		}
	}

	conns := make([]*grpc.ClientConn, 0, o.Connections)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range o.Connections {
		c, err := grpc.NewClient(o.Addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
		if err != nil {
			return nil, fmt.Errorf("--addr %s: %w", o.Addr, err)
		}
		conns = append(conns, c)
		if err := awaitReady(ctx, c, o.Timeout); err != nil {
			return nil, fmt.Errorf("--addr %s: %w", o.Addr, err)
		}
	}

	seed := o.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	r := &runner{opts: o, check: check, extproc: extproc, reqs: reqs, msgs: msgs}
	// Below 10^15, so that the 16 digits never run out.
	r.unique.Store(rand.New(rand.NewPCG(seed, 1<<63)).Uint64N(1e15))
	for i := range o.Concurrency {
		t := time.NewTimer(time.Hour)
		t.Stop()
		r.workers = append(r.workers, &worker{
			conn:   conns[i%len(conns)],
			rng:    rand.New(rand.NewPCG(seed, uint64(i))),
			timer:  t,
			hist:   NewHistogram(),
			denied: make(map[codes.Code]uint64),
			errs:   make(map[codes.Code]uint64),
		})
	}

	if o.Warmup > 0 {
		r.phase(ctx, o.Warmup, 0)
		for _, w := range r.workers {
			w.reset()
		}
	}

	var serverBefore, serverAfter CPUTime
	if o.PID > 0 {
		if serverBefore, err = ProcCPU(o.PID); err != nil {
			return nil, fmt.Errorf("--pid %d: %w", o.PID, err)
		}
	}
	selfBefore, selfErr := SelfCPU()
	elapsed := r.phase(ctx, o.Duration, o.Requests)
	selfAfter, selfErr2 := SelfCPU()
	if o.PID > 0 {
		if serverAfter, err = ProcCPU(o.PID); err != nil {
			return nil, fmt.Errorf("--pid %d (after the run): %w", o.PID, err)
		}
	}

	res := r.collect(elapsed)
	res.Interrupted = ctx.Err() != nil
	if o.PID > 0 {
		res.ServerCPU = cpuReport(o.PID, serverAfter.Sub(serverBefore), res.Requests)
	}
	if selfErr == nil && selfErr2 == nil {
		res.LoadgenCPU = cpuReport(os.Getpid(), selfAfter.Sub(selfBefore), res.Requests)
	}
	return res, nil
}

// awaitReady connects c and waits until it is READY, so that connection
// set-up is neither in the measurement nor mistaken for server errors.
func awaitReady(ctx context.Context, c *grpc.ClientConn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c.Connect()
	for {
		s := c.GetState()
		if s == connectivity.Ready {
			return nil
		}
		if !c.WaitForStateChange(ctx, s) {
			return fmt.Errorf("not connected within %v (last state %v): %w", timeout, s, ctx.Err())
		}
	}
}

// phase runs every worker until d has passed (if d > 0), limit requests
// have started (if limit > 0), or ctx ends, and returns the wall time from
// its start until the last request completed.
func (r *runner) phase(ctx context.Context, d time.Duration, limit uint64) time.Duration {
	var (
		issued atomic.Uint64
		stop   atomic.Bool
		wg     sync.WaitGroup
	)
	start := time.Now()
	if d > 0 {
		t := time.AfterFunc(d, func() { stop.Store(true) })
		defer t.Stop()
	}
	var interval time.Duration
	if r.opts.Rate > 0 {
		interval = time.Duration(float64(time.Second) / r.opts.Rate)
	}
	for _, w := range r.workers {
		wg.Go(func() {
			r.loop(ctx, w, start, d, interval, limit, &issued, &stop)
		})
	}
	wg.Wait()
	return time.Since(start)
}

// loop is one worker's request loop.
func (r *runner) loop(ctx context.Context, w *worker, start time.Time, d, interval time.Duration,
	limit uint64, issued *atomic.Uint64, stop *atomic.Bool) {
	keys := r.reqs.len()
	for !stop.Load() && ctx.Err() == nil {
		n := issued.Add(1)
		if limit > 0 && n > limit {
			return
		}
		begin := time.Now()
		if interval > 0 {
			// Request n has its own slot on a fixed schedule, so the
			// target rate holds however late individual wake-ups are.
			offset := time.Duration(n-1) * interval
			if d > 0 && offset >= d {
				return
			}
			due := start.Add(offset)
			if wait := due.Sub(begin); wait > 0 {
				w.timer.Reset(wait)
				select {
				case <-w.timer.C:
				case <-ctx.Done():
					w.timer.Stop()
					return
				}
			}
			begin = due
		}
		k := 0
		switch {
		case keys <= 1:
		case r.opts.Sequential:
			k = int((n - 1) % uint64(keys))
		default:
			k = w.rng.IntN(keys)
		}
		callCtx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
		if r.extproc {
			req := r.reqs.get(k)
			if r.msgs.marks != nil {
				req = r.msgs.uniqueRequest(r.unique.Add(1))
			}
			out, err := r.process(callCtx, w, req)
			cancel()
			latency := time.Since(begin)
			switch {
			case errors.Is(err, errUnexpected):
				w.unknown++
			case err != nil:
				if ctx.Err() != nil {
					return
				}
				w.errs[status.Code(err)]++
			default:
				w.hist.Record(latency)
				w.ok++
				if out.hit {
					w.hits++
				}
				if out.bodySent {
					w.bodies++
				}
				if out.skipped {
					w.skipped++
				}
			}
			continue
		}
		w.req.b = r.reqs.get(k)
		var err error
		if r.check {
			err = w.conn.Invoke(callCtx, checkMethod, &w.req, &w.checkResp)
		} else {
			err = w.conn.Invoke(callCtx, shouldRateLimitMethod, &w.req, &w.resp)
		}
		cancel()
		latency := time.Since(begin)
		if err != nil {
			if ctx.Err() != nil {
				// Cut short by our own caller: not the server's error.
				return
			}
			w.errs[status.Code(err)]++
			continue
		}
		w.hist.Record(latency)
		if r.check {
			switch c := codes.Code(w.checkResp.code); c {
			case codes.OK:
				w.ok++
			case codes.ResourceExhausted:
				w.overLimit++
			default:
				w.denied[c]++
			}
			continue
		}
		switch w.resp.code {
		case rlsv3.RateLimitResponse_OK:
			w.ok++
		case rlsv3.RateLimitResponse_OVER_LIMIT:
			w.overLimit++
		default:
			w.unknown++
		}
	}
}

// collect sums the workers into a Result.
func (r *runner) collect(elapsed time.Duration) *Result {
	o := r.opts
	res := &Result{
		Addr:           o.Addr,
		Domain:         o.Domain,
		Keys:           o.Keys,
		Concurrency:    o.Concurrency,
		Connections:    o.Connections,
		TargetRate:     o.Rate,
		ElapsedSeconds: elapsed.Seconds(),
		Errors:         map[string]uint64{},
		Histogram:      NewHistogram(),
	}
	for _, d := range o.Descriptors {
		res.Descriptors = append(res.Descriptors, d.String())
	}
	if r.check {
		res.Mode = ModeCheck
		res.Request = o.Method + " " + o.Host + " " + o.Path
		for _, h := range o.Headers {
			res.Headers = append(res.Headers, h.Name)
		}
		res.Denied = map[string]uint64{}
	}
	if r.extproc {
		res.Mode = ModeExtProc
		res.Request = o.Method + " " + o.Host + " " + o.Path
		for _, h := range o.Headers {
			res.Headers = append(res.Headers, h.Name)
		}
		res.CacheLoad, res.BodyBytes = o.CacheLoad, o.BodyBytes
		if res.CacheLoad == "" {
			res.CacheLoad = CacheHit
		}
	}
	res.Sequential = o.Sequential
	for _, w := range r.workers {
		res.Histogram.Merge(w.hist)
		res.OK += w.ok
		res.OverLimit += w.overLimit
		res.Unknown += w.unknown
		res.Hits += w.hits
		res.BodiesSent += w.bodies
		res.Skipped += w.skipped
		for c, n := range w.errs {
			res.Errors[c.String()] += n
			res.ErrorsTotal += n
		}
		for c, n := range w.denied {
			res.Denied[c.String()] += n
			res.DeniedTotal += n
		}
	}
	res.Requests = res.OK + res.OverLimit + res.Unknown + res.DeniedTotal + res.ErrorsTotal
	if elapsed > 0 {
		res.RPS = float64(res.Requests) / elapsed.Seconds()
	}
	h := res.Histogram
	res.LatencyMicros = Latency{
		Min:  micros(h.Min()),
		Mean: micros(h.Mean()),
		P50:  micros(h.Quantile(0.50)),
		P90:  micros(h.Quantile(0.90)),
		P99:  micros(h.Quantile(0.99)),
		P999: micros(h.Quantile(0.999)),
		Max:  micros(h.Max()),
	}
	return res
}

func cpuReport(pid int, used CPUTime, requests uint64) *CPUReport {
	c := &CPUReport{PID: pid, UserMicros: micros(used.User), SystemMicros: micros(used.System)}
	if requests > 0 {
		c.MicrosPerRequest = micros(used.Total()) / float64(requests)
	}
	return c
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
