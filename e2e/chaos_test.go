//go:build chaos

package e2e

// The fault suite: `make chaos` (go test -tags chaos -run TestChaos ./e2e).
// It measures, it does not only assert: each scenario runs the built
// sidecar against real redis-server processes under load from in-process
// gRPC clients, injects one fault, and records every answer's latency and
// code and the sidecar's /metrics before, during and after. The figures go
// to CHAOS_OUT (default bin/chaos) as chaos.json and chaos.md, and a missed
// target fails the run. The build tag keeps these timed targets out of
// `go test ./...`, where timed assertions are not allowed.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/floodgate/floodgate/internal/extproctest"
	"github.com/floodgate/floodgate/internal/faultproxy"
	"github.com/floodgate/floodgate/internal/redistest"
)

// Targets. readTimeout is the sidecar's default --redis-read-timeout.
const (
	readTimeout     = 500 * time.Millisecond
	maxAnswer       = 1500 * time.Millisecond // no answer slower than this (the outside check's bound)
	recoverWithin   = 2 * time.Second         // decisions succeed again this soon after the fault ends
	chaosClients    = 32
	chaosCallLimit  = 5 * time.Second // a call's own deadline: a stuck answer shows as DeadlineExceeded
	rssSlack        = 64 << 20        // RSS may grow this much during a fault, and stay grown after it
	goroutinesAfter = 25              // goroutines after a fault, over their level before it
	failoverGrace   = 2 * time.Second // after a promotion, time for clients to see the new topology
)

const chaosConfig = `domain: chaos
descriptors:
  - key: load
    rate_limit: {unit: hour, requests_per_unit: 1000000000}
  - key: quota
    rate_limit: {unit: hour, requests_per_unit: 100, algorithm: fixed_window}
`

// quotaLimit is the chaos config's quota limit.
const quotaLimit = 100

func chaosRequest(key, value string) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{Domain: "chaos", Descriptors: []*rlv3.RateLimitDescriptor{entry(key, value)}}
}

// loadKey spreads the load over many hash slots: 101 values per worker.
func loadKey(w, seq int) *rlsv3.RateLimitRequest {
	return chaosRequest("load", fmt.Sprintf("w%d-%d", w, seq%101))
}

// ---- the report ----

// report is what the suite writes: one entry per scenario.
type report struct {
	Started  time.Time         `json:"started"`
	Duration string            `json:"duration"`
	Commit   string            `json:"commit,omitempty"`
	Results  []*scenarioReport `json:"scenarios"`
}

type scenarioReport struct {
	Name    string                        `json:"name"`
	Setup   string                        `json:"setup"`
	Phases  []phaseStat                   `json:"phases"`
	Metrics map[string]map[string]float64 `json:"metrics"` // phase → series → value (goroutines and RSS: the phase's max)
	Figures map[string]string             `json:"figures"`
	Targets []target                      `json:"targets"`
	Notes   []string                      `json:"notes,omitempty"`
}

type phaseStat struct {
	Name     string         `json:"name"`
	Count    int            `json:"count"`
	Errors   int            `json:"errors"`
	Fraction float64        `json:"error_fraction"`
	P50      float64        `json:"p50_ms"`
	P99      float64        `json:"p99_ms"`
	Max      float64        `json:"max_ms"`
	Codes    map[string]int `json:"codes"`
	Messages []string       `json:"error_messages,omitempty"`
}

type target struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	OK   bool   `json:"ok"`
}

var chaosReport = &report{}

// TestChaos runs every scenario in turn (never in parallel: they measure
// latency on a shared machine), then writes the report.
func TestChaos(t *testing.T) {
	chaosReport.Started = time.Now().UTC()
	if out, err := runGit("rev-parse", "--short", "HEAD"); err == nil {
		chaosReport.Commit = out
	}
	defer writeReport(t)
	t.Run("a-stall", chaosStall)
	t.Run("b-cluster-kill", chaosClusterKill)
	t.Run("c-sentinel-failover", chaosSentinel)
	t.Run("d-proxy-latency", chaosProxy)
	t.Run("e-restart-empty", chaosRestart)
	t.Run("f-nearcache", chaosNearCache)
	t.Run("f-respcache", chaosRespCache)
	t.Run("g-exactness", chaosExactness)
}

func runGit(args ...string) (string, error) {
	out, err := exec.Command("git", append([]string{"-C", moduleRoot}, args...)...).Output()
	return strings.TrimSpace(string(out)), err
}

func writeReport(t *testing.T) {
	chaosReport.Duration = time.Since(chaosReport.Started).Round(time.Second).String()
	dir := os.Getenv("CHAOS_OUT")
	if dir == "" {
		dir = filepath.Join(moduleRoot, "bin", "chaos")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Error(err)
		return
	}
	b, _ := json.MarshalIndent(chaosReport, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "chaos.json"), append(b, '\n'), 0o644); err != nil {
		t.Error(err)
	}
	md := markdown(chaosReport)
	if err := os.WriteFile(filepath.Join(dir, "chaos.md"), []byte(md), 0o644); err != nil {
		t.Error(err)
	}
	t.Logf("report in %s:\n%s", dir, md)
}

func markdown(r *report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Fault suite (%s, commit %s, %s)\n\n", r.Started.Format(time.RFC3339), r.Commit, r.Duration)
	for _, s := range r.Results {
		fmt.Fprintf(&b, "## %s\n\n%s\n\n", s.Name, s.Setup)
		if len(s.Phases) > 0 && s.Phases[0].Count == 0 {
			b.WriteString("| phase | goroutines (max) | RSS MiB (max) |\n|---|---|---|\n")
			for _, p := range s.Phases {
				m := s.Metrics[p.Name]
				fmt.Fprintf(&b, "| %s | %.0f | %.1f |\n", p.Name, m["go_goroutines"], m["process_resident_memory_bytes"]/(1<<20))
			}
			b.WriteString("\n")
		} else if len(s.Phases) > 0 {
			b.WriteString("| phase | answers | errors | error fraction | p50 ms | p99 ms | max ms | goroutines (max) | RSS MiB (max) |\n|---|---|---|---|---|---|---|---|---|\n")
			for _, p := range s.Phases {
				m := s.Metrics[p.Name]
				fmt.Fprintf(&b, "| %s | %d | %d | %.3f | %.1f | %.1f | %.1f | %.0f | %.1f |\n", p.Name, p.Count, p.Errors, p.Fraction,
					p.P50, p.P99, p.Max, m["go_goroutines"], m["process_resident_memory_bytes"]/(1<<20))
			}
			b.WriteString("\n")
		}
		if len(s.Figures) > 0 {
			keys := sortedKeys(s.Figures)
			for _, k := range keys {
				fmt.Fprintf(&b, "- %s: %s\n", k, s.Figures[k])
			}
			b.WriteString("\n")
		}
		if len(s.Targets) > 0 {
			b.WriteString("| target | want | got | |\n|---|---|---|---|\n")
			for _, tg := range s.Targets {
				mark := "ok"
				if !tg.OK {
					mark = "**MISSED**"
				}
				fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", tg.Name, tg.Want, tg.Got, mark)
			}
			b.WriteString("\n")
		}
		for _, n := range s.Notes {
			fmt.Fprintf(&b, "%s\n\n", n)
		}
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ---- load and samples ----

// answer is one call's outcome.
type answer struct {
	start, latency time.Duration // since the scenario's start
	code           codes.Code
	over           bool
	msg            string
}

func (a answer) end() time.Duration { return a.start + a.latency }

// chaosLoad runs clients that each send one call after another.
type chaosLoad struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	recs   [][]answer
}

func startChaosLoad(sc *sidecar, t0 time.Time, clients int, req func(w, seq int) *rlsv3.RateLimitRequest) *chaosLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &chaosLoad{cancel: cancel, recs: make([][]answer, clients)}
	for w := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			var mine []answer
			defer func() { l.mu.Lock(); l.recs[w] = mine; l.mu.Unlock() }()
			for seq := 0; ctx.Err() == nil; seq++ {
				start := time.Now()
				cctx, ccancel := context.WithTimeout(ctx, chaosCallLimit)
				resp, err := sc.rls.ShouldRateLimit(cctx, req(w, seq))
				ccancel()
				if ctx.Err() != nil {
					return // cut by the end of the run
				}
				a := answer{start: start.Sub(t0), latency: time.Since(start), code: status.Code(err)}
				if err != nil {
					a.msg = status.Convert(err).Message()
				} else {
					a.over = resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT
				}
				mine = append(mine, a)
				if err != nil && a.latency < time.Millisecond {
					// A fast failure: leave the CPU to the sidecar.
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	return l
}

func (l *chaosLoad) stop() []answer {
	l.cancel()
	l.wg.Wait()
	var all []answer
	for _, r := range l.recs {
		all = append(all, r...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].start < all[j].start })
	return all
}

// sample is one scrape of /metrics.
type sample struct {
	at   time.Duration
	vals map[string]float64
}

var keptSeries = regexp.MustCompile(`^(go_goroutines|process_resident_memory_bytes|floodgate_redis_|floodgate_ratelimit_fail_open_total|floodgate_ratelimit_backend_errors_total|floodgate_cache_errors_total|floodgate_cache_requests_total|floodgate_nearcache_hits_total)`)

func chaosScrape(sc *sidecar) (map[string]float64, error) {
	code, body, err := sc.get("/metrics")
	if err != nil || code != 200 {
		return nil, fmt.Errorf("/metrics: %d %v", code, err)
	}
	vals := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' || !keptSeries.MatchString(line) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		var v float64
		if _, err := fmt.Sscanf(line[i+1:], "%g", &v); err == nil {
			vals[line[:i]] = v
		}
	}
	return vals, nil
}

// scenario is one fault run: load, samples, phase marks, targets.
type scenario struct {
	t       *testing.T
	rep     *scenarioReport
	t0      time.Time
	sc      *sidecar
	load    *chaosLoad
	stopS   chan struct{}
	sampled sync.WaitGroup
	mu      sync.Mutex
	samples []sample
	marks   []mark
	answers []answer
}

type mark struct {
	name string
	at   time.Duration
}

func newScenario(t *testing.T, setup string) *scenario {
	s := &scenario{t: t, rep: &scenarioReport{Name: t.Name(), Setup: setup, Metrics: map[string]map[string]float64{}, Figures: map[string]string{}}}
	chaosReport.Results = append(chaosReport.Results, s.rep)
	return s
}

// start begins the load (clients on sc with req) and the sampler, in phase
// "before".
func (s *scenario) start(sc *sidecar, clients int, req func(w, seq int) *rlsv3.RateLimitRequest) {
	s.sc = sc
	s.t0 = time.Now()
	s.marks = []mark{{"before", 0}}
	s.stopS = make(chan struct{})
	s.sampled.Add(1)
	go func() {
		defer s.sampled.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			if v, err := chaosScrape(sc); err == nil {
				s.mu.Lock()
				s.samples = append(s.samples, sample{at: time.Since(s.t0), vals: v})
				s.mu.Unlock()
			}
			select {
			case <-s.stopS:
				return
			case <-tick.C:
			}
		}
	}()
	if clients > 0 {
		s.load = startChaosLoad(sc, s.t0, clients, req)
	}
}

// mark starts a phase now and returns its offset.
func (s *scenario) mark(name string) time.Duration {
	at := time.Since(s.t0)
	s.mu.Lock()
	s.marks = append(s.marks, mark{name, at})
	s.mu.Unlock()
	return at
}

// finish stops the load and the sampler and fills the phases of the report.
func (s *scenario) finish() []answer {
	if s.load != nil {
		s.answers = s.load.stop()
	}
	close(s.stopS)
	s.sampled.Wait()
	if v, err := chaosScrape(s.sc); err == nil {
		s.samples = append(s.samples, sample{at: time.Since(s.t0), vals: v})
	}
	for i, m := range s.marks {
		end := time.Duration(math.MaxInt64)
		if i+1 < len(s.marks) {
			end = s.marks[i+1].at
		}
		var in []answer
		for _, a := range s.answers {
			if a.start >= m.at && a.start < end {
				in = append(in, a)
			}
		}
		s.rep.Phases = append(s.rep.Phases, stats(m.name, in))
		s.rep.Metrics[m.name] = s.phaseMetrics(m.at, end)
	}
	return s.answers
}

// phaseMetrics: each series' last value in [from, to); goroutines and RSS
// their max there, floodgate_redis_up its min.
func (s *scenario) phaseMetrics(from, to time.Duration) map[string]float64 {
	out := map[string]float64{}
	for _, sm := range s.samples {
		if sm.at < from || sm.at >= to {
			continue
		}
		for k, v := range sm.vals {
			old, seen := out[k]
			switch {
			case k == "go_goroutines" || k == "process_resident_memory_bytes":
				out[k] = max(old, v)
			case strings.HasPrefix(k, "floodgate_redis_up") || strings.HasPrefix(k, "floodgate_redis_node_up"):
				if !seen {
					old = v
				}
				out[k] = min(old, v)
			default:
				out[k] = v
			}
		}
	}
	return out
}

// last is a series' value in the last sample of the run.
func (s *scenario) last(series string) float64 {
	if len(s.samples) == 0 {
		return 0
	}
	return s.samples[len(s.samples)-1].vals[series]
}

func stats(name string, in []answer) phaseStat {
	p := phaseStat{Name: name, Count: len(in), Codes: map[string]int{}}
	lat := make([]float64, 0, len(in))
	seen := map[string]bool{}
	for _, a := range in {
		p.Codes[a.code.String()]++
		if a.code != codes.OK {
			p.Errors++
			if !seen[a.msg] && len(p.Messages) < 5 {
				seen[a.msg] = true
				p.Messages = append(p.Messages, a.code.String()+": "+a.msg)
			}
		}
		lat = append(lat, float64(a.latency)/float64(time.Millisecond))
	}
	if len(in) > 0 {
		p.Fraction = float64(p.Errors) / float64(len(in))
		sort.Float64s(lat)
		p.P50 = lat[len(lat)/2]
		p.P99 = lat[min(len(lat)-1, len(lat)*99/100)]
		p.Max = lat[len(lat)-1]
	}
	return p
}

func (s *scenario) phase(name string) phaseStat {
	for _, p := range s.rep.Phases {
		if p.Name == name {
			return p
		}
	}
	return phaseStat{Name: name}
}

// check records a target; a missed one fails the scenario.
func (s *scenario) check(name, want string, ok bool, got string, args ...any) {
	s.t.Helper()
	g := fmt.Sprintf(got, args...)
	s.rep.Targets = append(s.rep.Targets, target{Name: name, Want: want, Got: g, OK: ok})
	if !ok {
		s.t.Errorf("target missed: %s: want %s, got %s", name, want, g)
	}
}

func (s *scenario) figure(name, format string, args ...any) {
	s.rep.Figures[name] = fmt.Sprintf(format, args...)
}

func (s *scenario) note(format string, args ...any) {
	s.rep.Notes = append(s.rep.Notes, fmt.Sprintf(format, args...))
}

// recovery measures, from at (the end of a fault): the time to the first
// OK answer to a call sent at or after it, and to the end of the last error.
func recovery(answers []answer, at time.Duration) (firstOK, lastErr time.Duration, ok bool) {
	return recoveryUntil(answers, at, math.MaxInt64)
}

// recoveryUntil is recovery over the calls sent before to (the next fault).
func recoveryUntil(answers []answer, at, to time.Duration) (firstOK, lastErr time.Duration, ok bool) {
	firstOK = -1
	for _, a := range answers {
		if a.start >= to {
			continue
		}
		if a.start >= at && a.code == codes.OK && (firstOK < 0 || a.end()-at < firstOK) {
			firstOK = a.end() - at
		}
		if a.code != codes.OK && a.end() > at && a.end() <= to && a.end()-at > lastErr {
			lastErr = a.end() - at
		}
	}
	return firstOK, lastErr, firstOK >= 0
}

// maxLatency is the slowest answer that ended at or after from and began
// before to: calls in flight when a fault began count too.
func maxLatency(answers []answer, from, to time.Duration) time.Duration {
	var m time.Duration
	for _, a := range answers {
		if a.end() >= from && a.start < to && a.latency > m {
			m = a.latency
		}
	}
	return m
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

// signalRedis stalls (SIGSTOP) or resumes (SIGCONT) a redis-server.
func signalRedis(t *testing.T, r *redistest.Server, sig syscall.Signal) {
	t.Helper()
	pause := r.Resume
	if sig == syscall.SIGSTOP {
		pause = r.Pause
	}
	if err := pause(); err != nil {
		t.Fatalf("kill -%v %s: %v", sig, r.Addr, err)
	}
}

// logCount counts the sidecar's log lines written at or after since that
// contain any of subs.
func logCount(sc *sidecar, since time.Time, subs ...string) int {
	f, err := os.Open(sc.logPath)
	if err != nil {
		return -1
	}
	defer f.Close()
	n := 0
	scan := bufio.NewScanner(f)
	scan.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for scan.Scan() {
		line := scan.Text()
		var l struct {
			Time time.Time `json:"time"`
		}
		if json.Unmarshal([]byte(line), &l) != nil || l.Time.Before(since) {
			continue
		}
		for _, s := range subs {
			if strings.Contains(line, s) {
				n++
				break
			}
		}
	}
	return n
}

// defaults undoes what startSidecar sets for ordinary e2e tests (a 5 s
// Redis read timeout, so a loaded machine does not fail them): the fault
// suite measures the defaults users run.
var defaults = []string{"--redis-read-timeout", readTimeout.String()}

func chaosSidecar(t *testing.T, name string, args ...string) *sidecar {
	t.Helper()
	cfg := writeFile(t, t.TempDir(), "chaos.yaml", chaosConfig)
	return startSidecar(t, name, append(append([]string{"--config", cfg}, defaults...), args...)...)
}

// waitDecided waits until sc decides a call (Redis reachable).
func waitDecided(t *testing.T, sc *sidecar) {
	t.Helper()
	eventually(t, 20*time.Second, "a first decision", func() error {
		resp, err := sc.call(chaosRequest("load", "probe"))
		if err != nil {
			return err
		}
		if resp.GetStatuses()[0].GetCurrentLimit() == nil {
			return fmt.Errorf("no decision: %v", resp)
		}
		return nil
	})
}

// boundedResources checks goroutines and RSS during a fault and after it
// against the phase before.
func (s *scenario) boundedResources(during, after string) {
	s.t.Helper()
	b, d, a := s.rep.Metrics["before"], s.rep.Metrics[during], s.rep.Metrics[after]
	gBound := b["go_goroutines"]*1.5 + 2*chaosClients
	s.check("goroutines during the fault", fmt.Sprintf("<= %.0f (1.5 x before + 2 per client)", gBound),
		d["go_goroutines"] <= gBound, "%.0f (before %.0f)", d["go_goroutines"], b["go_goroutines"])
	ga := s.last("go_goroutines")
	s.check("goroutines at the end", fmt.Sprintf("<= %.0f (before + %d)", b["go_goroutines"]+goroutinesAfter, goroutinesAfter),
		ga <= b["go_goroutines"]+goroutinesAfter, "%.0f", ga)
	mib := func(v float64) float64 { return v / (1 << 20) }
	s.check("RSS during the fault", fmt.Sprintf("<= %.0f MiB (before + 64 MiB)", mib(b["process_resident_memory_bytes"]+rssSlack)),
		d["process_resident_memory_bytes"] <= b["process_resident_memory_bytes"]+rssSlack, "%.1f MiB (before %.1f)", mib(d["process_resident_memory_bytes"]), mib(b["process_resident_memory_bytes"]))
	s.check("RSS after the fault", fmt.Sprintf("<= %.0f MiB", mib(b["process_resident_memory_bytes"]+rssSlack)),
		a["process_resident_memory_bytes"] <= b["process_resident_memory_bytes"]+rssSlack, "%.1f MiB", mib(a["process_resident_memory_bytes"]))
}

// breakerOpened reports whether floodgate_redis_up went to 0 or down_total
// grew during phase, with the figures.
func (s *scenario) breakerOpened(phase string) (bool, string) {
	prev := "before"
	for i, p := range s.rep.Phases {
		if p.Name == phase && i > 0 {
			prev = s.rep.Phases[i-1].Name
		}
	}
	b, d := s.rep.Metrics[prev], s.rep.Metrics[phase]
	up, hasUp := d["floodgate_redis_up"]
	downs := d["floodgate_redis_down_total"] - b["floodgate_redis_down_total"]
	return (hasUp && up == 0) || downs > 0, fmt.Sprintf("floodgate_redis_up min %v, down_total +%v", up, downs)
}

// ---- a. Redis stalled with SIGSTOP ----

func chaosStall(t *testing.T) {
	s := newScenario(t, fmt.Sprintf("Standalone Redis, %d clients on distinct keys; SIGSTOP for 5 s, then SIGCONT. Default --redis-read-timeout (500 ms).", chaosClients))
	redis := redistest.StartServer(t)
	sc := chaosSidecar(t, "stall", "--redis-url", redis.URL)
	waitDecided(t, sc)
	s.start(sc, chaosClients, loadKey)
	time.Sleep(3 * time.Second)
	stopAt := s.mark("during")
	signalRedis(t, redis, syscall.SIGSTOP)
	time.Sleep(5 * time.Second)
	signalRedis(t, redis, syscall.SIGCONT)
	contAt := s.mark("after")
	time.Sleep(4 * time.Second)
	answers := s.finish()

	worst := maxLatency(answers, stopAt, math.MaxInt64)
	s.figure("slowest answer from SIGSTOP on", "%s", ms(worst))
	s.check("slowest answer during and after the stall", "< "+ms(maxAnswer)+" (read timeout "+ms(readTimeout)+" + margin)", worst < maxAnswer, "%s", ms(worst))
	opened, how := s.breakerOpened("during")
	s.check("breaker opens", "floodgate_redis_up 0 or down_total up", opened, "%s", how)
	s.boundedResources("during", "after")
	first, lastErr, ok := recovery(answers, contAt)
	s.figure("first success after SIGCONT", "%s", ms(first))
	s.figure("last error after SIGCONT", "%s", ms(lastErr))
	s.check("first success after SIGCONT", "<= "+ms(recoverWithin), ok && first <= recoverWithin, "%s", ms(first))
	s.check("last error after SIGCONT", "<= "+ms(recoverWithin), lastErr <= recoverWithin, "%s", ms(lastErr))
}

// ---- b. one Cluster master killed ----

func chaosClusterKill(t *testing.T) {
	s := newScenario(t, fmt.Sprintf("Redis Cluster of 3 masters + 3 replicas (cluster-node-timeout 2000), %d clients on keys over many slots; SIGKILL one master once its replica's link is up. The window is the kill to the replica's promotion; `settle` is the %s after it.", chaosClients, failoverGrace))
	c := redistest.StartReplicatedCluster(t, 3)
	sc := chaosSidecar(t, "cluster", "--redis-url", c.URL, "--redis-cluster")
	waitDecided(t, sc)
	s.start(sc, chaosClients, loadKey)
	time.Sleep(3 * time.Second)
	killAt := s.mark("during")
	c.Masters[0].Stop()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if role, err := c.Replicas[0].Role(); err == nil && role == "master" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the replica was not promoted within 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	promotedAt := s.mark("settle")
	time.Sleep(failoverGrace)
	afterAt := s.mark("after")
	afterWall := time.Now()
	time.Sleep(4 * time.Second)
	answers := s.finish()

	s.figure("kill to promotion", "%s", ms(promotedAt-killAt))
	var down []string
	for k, v := range s.rep.Metrics["during"] {
		if strings.HasPrefix(k, "floodgate_redis_node_up") && v == 0 {
			down = append(down, strings.TrimPrefix(k, "floodgate_redis_node_up"))
		}
	}
	sort.Strings(down)
	s.figure("masters marked down during the window (floodgate_redis_node_up 0)", "%d: %s (killed: %s)", len(down), strings.Join(down, " "), c.Masters[0].Addr)
	s.note("Every master, not only the killed one, was marked down at some point of the window. Likely cause: with Redis's default cluster-require-full-coverage yes, the healthy masters answer CLUSTERDOWN from the moment the killed master is flagged as failing (after cluster-node-timeout) until its replica is promoted, so every decision fails in that last part of the window.")
	d := s.phase("during")
	s.check("fraction failing during the failover", "<= 0.50 (ideally about 1/3: one master of three)", d.Count > 0 && d.Fraction <= 0.5, "%.3f of %d", d.Fraction, d.Count)
	st := s.phase("settle")
	s.figure("errors in the settle phase", "%d of %d", st.Errors, st.Count)
	a := s.phase("after")
	s.check("errors after the window", "0", a.Count > 0 && a.Errors == 0, "%d of %d", a.Errors, a.Count)
	_, lastErr, _ := recovery(answers, promotedAt)
	s.figure("last error after the promotion", "%s", ms(lastErr))
	s.check("the sidecar keeps running", "no restart", sc.running(), "running=%v", sc.running())
	n := logCount(sc, afterWall, "READONLY", "MOVED")
	s.check("READONLY/MOVED in logs after the window", "0", n == 0, "%d lines", n)
	bad := 0
	for _, a := range answers {
		if a.start >= afterAt && (strings.Contains(a.msg, "READONLY") || strings.Contains(a.msg, "MOVED")) {
			bad++
		}
	}
	s.check("READONLY/MOVED in answers after the window", "0", bad == 0, "%d", bad)
}

// ---- c. Sentinel failover ----

func chaosSentinel(t *testing.T) {
	s := newScenario(t, fmt.Sprintf("Master, replica and 3 sentinels (down-after 1 s), %d clients; SIGKILL the master. The window is the kill until a sentinel names the new master; `settle` is the %s after it.", chaosClients, failoverGrace))
	g := redistest.StartSentinel(t)
	sc := chaosSidecar(t, "sentinel", "--redis-sentinel-master", g.MasterName, "--redis-sentinel-addrs", strings.Join(g.Addrs(), ","))
	waitDecided(t, sc)
	old, err := g.MasterAddr()
	if err != nil {
		t.Fatal(err)
	}
	s.start(sc, chaosClients, loadKey)
	time.Sleep(3 * time.Second)
	killAt := s.mark("during")
	g.Master.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if a, err := g.MasterAddr(); err == nil && a != old {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no failover within 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	failedAt := s.mark("settle")
	time.Sleep(failoverGrace)
	s.mark("after")
	time.Sleep(4 * time.Second)
	answers := s.finish()

	s.figure("kill to new master", "%s", ms(failedAt-killAt))
	first, lastErr, _ := recovery(answers, failedAt)
	s.figure("first success after the new master was named", "%s", ms(first))
	s.figure("last error after the new master was named", "%s", ms(lastErr))
	d := s.phase("during")
	s.figure("errors during the window", "%d of %d (%.3f)", d.Errors, d.Count, d.Fraction)
	a := s.phase("after")
	s.check("errors after the window", "0", a.Count > 0 && a.Errors == 0, "%d of %d", a.Errors, a.Count)
	early := 0
	for _, a := range answers {
		if a.end() < killAt && a.code != codes.OK {
			early++
		}
	}
	s.check("errors before the kill", "0", early == 0, "%d", early)
}

// ---- d. latency and stalls through the fault proxy ----

func chaosProxy(t *testing.T) {
	s := newScenario(t, fmt.Sprintf("Standalone Redis behind the fault proxy, %d clients. Latency is added to Redis's replies (so to every round trip); then a 3 s stall of the proxy (connections open, nothing forwarded).", chaosClients))
	redis := redistest.StartServer(t)
	p, err := faultproxy.Start(redis.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	sc := chaosSidecar(t, "proxy", "--redis-url", "redis://"+p.Addr)
	waitDecided(t, sc)
	s.start(sc, chaosClients, loadKey)
	time.Sleep(3 * time.Second)
	var ends, nexts []time.Duration
	for _, d := range []time.Duration{50 * time.Millisecond, 300 * time.Millisecond, 800 * time.Millisecond} {
		at := s.mark("+" + ms(d))
		if len(ends) > 0 {
			nexts = append(nexts, at)
		}
		p.SetLatency(faultproxy.Down, d)
		time.Sleep(4 * time.Second)
		p.Normal()
		ends = append(ends, s.mark("normal after +"+ms(d)))
		time.Sleep(3 * time.Second)
	}
	nexts = append(nexts, s.mark("stall 3 s"))
	p.Stall()
	time.Sleep(3 * time.Second)
	p.Normal()
	endStall := s.mark("after")
	time.Sleep(4 * time.Second)
	answers := s.finish()

	for i, name := range []string{"+50 ms", "+300 ms", "+800 ms", "stall 3 s"} {
		ph := s.phase(name)
		opened, how := s.breakerOpened(name)
		s.figure("breaker in "+name, "opened=%v (%s)", opened, how)
		s.check("slowest answer in "+name, "< "+ms(maxAnswer), ph.Max < float64(maxAnswer/time.Millisecond), "%.0f ms", ph.Max)
		if i < 3 {
			_, lastErr, _ := recoveryUntil(answers, ends[i], nexts[i])
			s.figure("last error after removing "+name, "%s", ms(lastErr))
		}
	}
	ph := s.phase("+50 ms")
	s.check("errors with +50 ms", "0", ph.Errors == 0, "%d of %d", ph.Errors, ph.Count)
	// Replies 300 ms late are still within the 500 ms read timeout: a slow
	// Redis, not a dead one, should still decide.
	ph = s.phase("+300 ms")
	s.check("error fraction with +300 ms (below the read timeout)", "<= 0.01", ph.Errors <= ph.Count/100, "%.3f (%d of %d)", ph.Fraction, ph.Errors, ph.Count)
	first, lastErr, ok := recovery(answers, endStall)
	s.figure("first success after the stall", "%s", ms(first))
	s.check("last error after the stall", "<= "+ms(recoverWithin), ok && lastErr <= recoverWithin, "%s (first success %s)", ms(lastErr), ms(first))
	s.boundedResources("stall 3 s", "after")
}

// ---- e. Redis restarted empty ----

// takeQuota sends n calls for quota value v, one after another, and
// returns how many were admitted and how many failed.
func takeQuota(sc *sidecar, v string, n int) (admitted, failed int) {
	for range n {
		resp, err := sc.call(chaosRequest("quota", v))
		switch {
		case err != nil:
			failed++
		case resp.GetOverallCode() == rlsv3.RateLimitResponse_OK:
			admitted++
		}
	}
	return admitted, failed
}

func chaosRestart(t *testing.T) {
	s := newScenario(t, fmt.Sprintf("Standalone Redis, %d clients; Redis killed (SIGKILL) and a new empty one started on the same port 1 s later. Two sidecars: one with --near-cache-size 0, one with the default near-cache; one key each with a limit of %d per hour (fixed window), spent before the restart and tried %d times after it.", chaosClients, quotaLimit, 2*quotaLimit))
	redis := redistest.StartServer(t)
	plain := chaosSidecar(t, "restart-plain", "--redis-url", redis.URL, "--near-cache-size", "0")
	near := chaosSidecar(t, "restart-near", "--redis-url", redis.URL)
	waitDecided(t, plain)
	waitDecided(t, near)
	windowHeadroom(t, time.Hour, time.Minute)
	s.start(plain, chaosClients, loadKey)
	beforePlain, _ := takeQuota(plain, "restart-plain", 2*quotaLimit)
	beforeNear, _ := takeQuota(near, "restart-near", 2*quotaLimit)
	time.Sleep(2 * time.Second)
	s.mark("down")
	redis.Stop()
	time.Sleep(time.Second)
	if err := redis.Start(); err != nil {
		t.Fatal(err)
	}
	upAt := s.mark("after")
	time.Sleep(3 * time.Second)
	afterPlain, failedPlain := takeQuota(plain, "restart-plain", 2*quotaLimit)
	afterNear, failedNear := takeQuota(near, "restart-near", 2*quotaLimit)
	answers := s.finish()

	first, lastErr, ok := recovery(answers, upAt)
	s.figure("first success after the new Redis started", "%s", ms(first))
	s.figure("last error after the new Redis started", "%s", ms(lastErr))
	s.check("decisions resume without a sidecar restart", "first success <= "+ms(recoverWithin), ok && first <= recoverWithin && plain.running(), "%s", ms(first))
	s.check("errors from 2 s after the restart", "0", lastErr <= recoverWithin, "last error at %s", ms(lastErr))
	s.check("quota spent before the restart", fmt.Sprintf("%d and %d", quotaLimit, quotaLimit), beforePlain == quotaLimit && beforeNear == quotaLimit, "%d and %d", beforePlain, beforeNear)
	s.figure("admitted after the restart, no near-cache", "%d of %d (failed %d): the counter restarted at 0", afterPlain, 2*quotaLimit, failedPlain)
	s.figure("admitted after the restart, near-cache", "%d of %d (failed %d): the near-cache still knew the key was over its limit", afterNear, 2*quotaLimit, failedNear)
	s.check("admitted across the restart, no near-cache", fmt.Sprintf("<= %d (limit + one window)", 2*quotaLimit), beforePlain+afterPlain <= 2*quotaLimit, "%d", beforePlain+afterPlain)
	s.check("admitted across the restart, near-cache", fmt.Sprintf("<= %d", 2*quotaLimit), beforeNear+afterNear <= 2*quotaLimit, "%d", beforeNear+afterNear)
}

// ---- f. near-cache and response cache ----

func chaosNearCache(t *testing.T) {
	s := newScenario(t, fmt.Sprintf("Standalone Redis, --near-cache-size 10000; one key with a limit of %d per hour spent; Redis stalled (SIGSTOP 3 s), then restarted empty; the key tried all along, one call after another.", quotaLimit))
	redis := redistest.StartServer(t)
	sc := chaosSidecar(t, "nearcache", "--redis-url", redis.URL, "--near-cache-size", "10000")
	waitDecided(t, sc)
	windowHeadroom(t, time.Hour, time.Minute)
	s.start(sc, 0, nil)
	spent, _ := takeQuota(sc, "near", 2*quotaLimit)
	try := func(d time.Duration) (admitted, rejected, failed int) {
		for end := time.Now().Add(d); time.Now().Before(end); {
			resp, err := sc.call(chaosRequest("quota", "near"))
			switch {
			case err != nil:
				failed++
			case resp.GetOverallCode() == rlsv3.RateLimitResponse_OK:
				admitted++
			default:
				rejected++
			}
		}
		return
	}
	s.mark("stall")
	signalRedis(t, redis, syscall.SIGSTOP)
	sa, sr, sf := try(3 * time.Second)
	signalRedis(t, redis, syscall.SIGCONT)
	s.mark("restart")
	redis.Stop()
	if err := redis.Start(); err != nil {
		t.Fatal(err)
	}
	ra, rr, rf := try(3 * time.Second)
	s.finish()
	s.check("quota spent first", fmt.Sprint(quotaLimit), spent == quotaLimit, "%d", spent)
	s.check("stays rejected during the stall", "0 admitted, 0 failed", sa == 0 && sf == 0 && sr > 0, "%d admitted, %d rejected, %d failed", sa, sr, sf)
	s.check("stays rejected after an empty restart", "0 admitted, 0 failed", ra == 0 && rf == 0 && rr > 0, "%d admitted, %d rejected, %d failed", ra, rr, rf)
	s.figure("near-cache hits", "%v", s.last("floodgate_nearcache_hits_total"))
}

const chaosCacheRules = `rules:
  - name: items
    match: {hosts: [api.example.com], path_prefix: /v1/items/}
    scope: public
    ttl: 60s
`

func chaosRespCache(t *testing.T) {
	s := newScenario(t, "Response cache on the Redis store (--cache-config, --redis-url); one stored entry read one request after another; Redis stalled (SIGSTOP 3 s).")
	redis := redistest.StartServer(t)
	path := writeFile(t, t.TempDir(), "cache.yaml", chaosCacheRules)
	sc := chaosSidecar(t, "respcache", "--redis-url", redis.URL, "--cache-config", path)
	waitDecided(t, sc)
	s.start(sc, 0, nil)
	client := extproctest.New(sc.conn)
	up := extproctest.Response{Status: 200, Header: [][2]string{{"content-type", "text/plain"}, {"cache-control", "max-age=60"}}, Body: []byte("upstream")}
	type res struct {
		hits, forwarded, failed int
		worst                   time.Duration
	}
	get := func(d time.Duration, untilHit bool) (r res, firstHit time.Duration) {
		firstHit = -1
		start := time.Now()
		for end := start.Add(d); time.Now().Before(end); {
			t0 := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), chaosCallLimit)
			out, err := client.Do(ctx, extproctest.Request{Authority: "api.example.com", Path: "/v1/items/1"}, up)
			cancel()
			r.worst = max(r.worst, time.Since(t0))
			switch {
			case err != nil || out.Status != 200:
				r.failed++
			case out.Hit():
				r.hits++
				if firstHit < 0 {
					firstHit = time.Since(start)
				}
				if untilHit {
					return r, firstHit
				}
			default:
				r.forwarded++
			}
		}
		return r, firstHit
	}
	before, _ := get(time.Second, false)
	errsBefore := sumPrefix(s.scrapeNow(), "floodgate_cache_errors_total")
	s.mark("stall")
	signalRedis(t, redis, syscall.SIGSTOP)
	during, _ := get(3*time.Second, false)
	signalRedis(t, redis, syscall.SIGCONT)
	s.mark("after")
	after, firstHit := get(5*time.Second, true)
	errsAfter := sumPrefix(s.scrapeNow(), "floodgate_cache_errors_total")
	s.finish()
	s.figure("before", "%d hits, %d forwarded, %d failed", before.hits, before.forwarded, before.failed)
	s.figure("during the stall", "%d hits, %d forwarded, %d failed, slowest %s", during.hits, during.forwarded, during.failed, ms(during.worst))
	s.check("no request fails during the stall", "0 failed", during.failed == 0 && during.forwarded+during.hits > 0, "%d failed of %d", during.failed, during.failed+during.forwarded+during.hits)
	s.check("storage errors counted", "floodgate_cache_errors_total grows", errsAfter > errsBefore, "%v -> %v", errsBefore, errsAfter)
	s.figure("after SIGCONT", "%d hits, %d forwarded, %d failed until the first hit", after.hits, after.forwarded, after.failed)
	s.check("hits resume after SIGCONT", "a hit within 5 s", firstHit >= 0, "first hit after %s", ms(firstHit))
	s.note("Each request here is a whole ext_proc stream (request headers, response headers, body). During the stall it is held by the store's Redis calls (a get on the request, a put on the response), each up to the read timeout, so the slowest stream above is what Envoy would wait; Envoy's ext_proc `message_timeout` defaults to 200 ms per message.")
}

func (s *scenario) scrapeNow() map[string]float64 {
	v, _ := chaosScrape(s.sc)
	return v
}

func sumPrefix(m map[string]float64, prefix string) float64 {
	var sum float64
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			sum += v
		}
	}
	return sum
}

// ---- g. exactness under faults ----

func chaosExactness(t *testing.T) {
	s := newScenario(t, fmt.Sprintf("Two sidecars on one Redis (or one Cluster, one Sentinel group), 64 clients each, one key with a limit of L = %d per hour (fixed window). Without a fault: 3L calls. With one: L/2 calls, the fault beside the load, then 2L more calls. Admitted = OK answers that carry a decision; failed open = OK answers without one.", exactLimit))
	cfg := writeFile(t, t.TempDir(), "exact.yaml", exactConfig)
	pair := func(name string, args ...string) []*sidecar {
		args = append(append([]string{"--config", cfg}, defaults...), args...)
		return []*sidecar{startSidecar(t, name+"-a", args...), startSidecar(t, name+"-b", args...)}
	}
	redis := redistest.StartServer(t)
	plain := pair("exact", "--redis-url", redis.URL)
	open := pair("exact-open", "--redis-url", redis.URL, "--fail-open")
	p, err := faultproxy.Start(redis.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	proxied := pair("exact-proxy", "--redis-url", "redis://"+p.Addr)
	g := redistest.StartSentinel(t)
	sentinel := pair("exact-sentinel", "--redis-sentinel-master", g.MasterName, "--redis-sentinel-addrs", strings.Join(g.Addrs(), ","))
	c := redistest.StartReplicatedCluster(t, 3)
	cluster := pair("exact-cluster", "--redis-url", c.URL, "--redis-cluster")
	s.sc = plain[0]
	windowHeadroom(t, time.Hour, 3*time.Minute)

	stall := func() {
		signalRedis(t, redis, syscall.SIGSTOP)
		time.Sleep(2 * time.Second)
		signalRedis(t, redis, syscall.SIGCONT)
		time.Sleep(time.Second)
	}
	restart := func() {
		redis.Stop()
		time.Sleep(500 * time.Millisecond)
		if err := redis.Start(); err != nil {
			t.Error(err)
		}
		time.Sleep(time.Second)
	}
	slow := func() {
		p.SetLatency(faultproxy.Down, 800*time.Millisecond)
		time.Sleep(3 * time.Second)
		p.Normal()
		time.Sleep(time.Second)
	}
	sentinelFailover := func() {
		old, err := g.MasterAddr()
		if err != nil {
			t.Error(err)
			return
		}
		g.Master.Stop()
		for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if a, err := g.MasterAddr(); err == nil && a != old {
				break
			}
		}
		time.Sleep(failoverGrace)
	}
	clusterKill := func() {
		// The test's key is the only one in this cluster: kill its master.
		for i, m := range c.Masters {
			if n, err := m.Do("DBSIZE"); err != nil || n == "0" {
				continue
			}
			m.Stop()
			for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
				if role, err := c.Replicas[i].Role(); err == nil && role == "master" {
					break
				}
			}
			time.Sleep(failoverGrace)
			return
		}
		t.Error("no master holds the key")
	}
	failOpen := func(scs []*sidecar) float64 {
		var n float64
		for _, sc := range scs {
			n += sc.mustMetric("floodgate_ratelimit_fail_open_total")
		}
		return n
	}
	const L = exactLimit
	replicated := "asynchronous replication: writes the old master acknowledged but had not sent to its replica are lost, at most about one per client in flight (128)"
	for i, tc := range []struct {
		name   string
		scs    []*sidecar
		during func()
		bound  int64
		why    string
	}{
		{"no fault", plain, nil, 0, "exact"},
		{"stall 2 s (SIGSTOP)", plain, stall, 0, "a call that times out answers UNAVAILABLE; if Redis ran its script later, that quota is lost, never granted twice"},
		{"stall 2 s, --fail-open", open, stall, 0, "decided answers stay within L; the fail-open answers are extra, one per error turned into OK, and counted"},
		{"+800 ms on replies for 3 s", proxied, slow, 0, "as a stall: timed-out calls may be counted, never answered OK"},
		{"restart empty", plain, restart, L, "the counter restarts at 0: up to one more window's quota (the near-cache keeps a key that was already over its limit rejected)"},
		{"sentinel failover", sentinel, sentinelFailover, 2 * 64, replicated},
		{"cluster master of the key killed", cluster, clusterKill, 2 * 64, replicated},
	} {
		req := exactRequest("fixed", fmt.Sprintf("g-%d", i))
		foBefore := failOpen(tc.scs)
		var got exactCount
		if tc.during == nil {
			got = countAdmitted(tc.scs, req, 64, 0, 3*L, nil)
		} else {
			got = countAdmitted(tc.scs, req, 64, L/2, 2*L, tc.during)
		}
		fo := failOpen(tc.scs) - foBefore
		s.figure(tc.name, "%+v", got)
		if tc.during == nil {
			s.check(tc.name, fmt.Sprintf("admitted == L = %d", L), got.Admitted == L && got.Errors == 0, "%d admitted of %d, %d errors", got.Admitted, got.Sent, got.Errors)
			continue
		}
		if got.Rejected > 0 && got.Admitted < L {
			s.figure(tc.name+": quota lost", "%d of L (calls counted by Redis but answered with an error: timed out, or retried)", L-got.Admitted)
		}
		s.check(tc.name, fmt.Sprintf("admitted <= L + %d (%s)", tc.bound, tc.why), got.Admitted <= L+tc.bound && got.Other == 0,
			"%d admitted (excess %d), %d failed open, %d errors, %d sent", got.Admitted, max(0, got.Admitted-L), got.FailedOpen, got.Errors, got.Sent)
		if tc.name == "stall 2 s, --fail-open" {
			s.check(tc.name+": fail-open answers counted", "OK answers without a decision == fail_open_total", float64(got.FailedOpen) == fo && got.Errors == 0, "%d answers, fail_open_total +%v, %d errors", got.FailedOpen, fo, got.Errors)
		}
	}
}
