package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Columns of the samples CSV, in order. Rates are per second over the
// interval since the previous sample (0 in the first row); server_errors is
// the growth of the server's error counters since the first sample.
var columns = []string{
	"t_s",               // seconds since sampling started
	"rss_bytes",         // VmRSS of /proc/PID/status
	"goroutines",        // go_goroutines
	"heap_inuse_bytes",  // go_memstats_heap_inuse_bytes
	"fds",               // entries of /proc/PID/fd
	"metrics_open_fds",  // process_open_fds
	"metrics_rss_bytes", // process_resident_memory_bytes
	"cpu_pct",           // process_cpu_seconds_total growth, % of one core
	"limit_hits_per_s",  // floodgate_ratelimit_total_hits growth: hits asked of every rule, by ShouldRateLimit and Check
	"authz_per_s",       // floodgate_auth_decisions_total growth
	"extproc_per_s",     // floodgate_cache_requests_total growth
	"server_errors",     // backend, cache and unavailable-auth errors since the start
}

// errorCounters are the server's counters whose growth is an error: a
// backend that failed a decision, a cache store that failed, an auth
// decision answered unavailable.
var errorCounters = []struct{ name, labels string }{
	{"floodgate_ratelimit_backend_errors_total", ""},
	{"floodgate_cache_errors_total", ""},
	{"floodgate_auth_decisions_total", `result="unavailable"`},
}

func runSample(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("sample", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pid := fs.Int("pid", 0, "`PID` of the sidecar (required)")
	metricsURL := fs.String("metrics", "", "the sidecar's Prometheus `URL` (required), e.g. http://127.0.0.1:8080/metrics")
	interval := fs.Duration("interval", 10*time.Second, "time between samples")
	duration := fs.Duration("duration", time.Hour, "sampling length; the last sample is taken at its end")
	out := fs.String("out", "", "CSV `file` to write (required)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err}
	}
	switch {
	case *pid <= 0:
		return &usageError{errors.New("--pid: required, a positive process id")}
	case *metricsURL == "":
		return &usageError{errors.New("--metrics: required, the sidecar's /metrics URL")}
	case *out == "":
		return &usageError{errors.New("--out: required, the CSV file to write")}
	case *interval <= 0:
		return &usageError{fmt.Errorf("--interval %v: want > 0", *interval)}
	case *duration < *interval:
		return &usageError{fmt.Errorf("--duration %v: want at least --interval (%v)", *duration, *interval)}
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer f.Close()
	s := &sampler{pid: *pid, url: *metricsURL, client: &http.Client{Timeout: 5 * time.Second}, w: csv.NewWriter(f)}
	if err := s.w.Write(columns); err != nil {
		return err
	}
	start := time.Now()
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for {
		if err := s.take(time.Since(start)); err != nil {
			return err
		}
		if time.Since(start) >= *duration {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped after %v: %w", time.Since(start).Round(time.Second), ctx.Err())
		case <-tick.C:
		}
	}
	s.w.Flush()
	if err := s.w.Error(); err != nil {
		return err
	}
	return f.Close()
}

// sampler takes one CSV row per call, keeping the previous counters to
// turn them into rates.
type sampler struct {
	pid    int
	url    string
	client *http.Client
	w      *csv.Writer

	prev      *counters
	prevT     time.Duration
	errorBase float64
}

// counters are the cumulative values that rows turn into rates.
type counters struct {
	cpu, ratelimit, authz, extproc, errors float64
}

func (s *sampler) take(t time.Duration) error {
	rss, err := procRSS(s.pid)
	if err != nil {
		return err
	}
	fds, err := procFDs(s.pid)
	if err != nil {
		return err
	}
	m, err := s.scrape()
	if err != nil {
		return err
	}
	c := counters{
		cpu:       m.sum("process_cpu_seconds_total", ""),
		ratelimit: m.sum("floodgate_ratelimit_total_hits", ""),
		authz:     m.sum("floodgate_auth_decisions_total", ""),
		extproc:   m.sum("floodgate_cache_requests_total", ""),
	}
	for _, e := range errorCounters {
		c.errors += m.sum(e.name, e.labels)
	}
	var cpuPct, rl, az, ep float64
	if s.prev == nil {
		s.errorBase = c.errors
	} else if dt := (t - s.prevT).Seconds(); dt > 0 {
		cpuPct = 100 * (c.cpu - s.prev.cpu) / dt
		rl = (c.ratelimit - s.prev.ratelimit) / dt
		az = (c.authz - s.prev.authz) / dt
		ep = (c.extproc - s.prev.extproc) / dt
	}
	s.prev, s.prevT = &c, t
	row := []float64{
		t.Seconds(), float64(rss), m.sum("go_goroutines", ""), m.sum("go_memstats_heap_inuse_bytes", ""),
		float64(fds), m.sum("process_open_fds", ""), m.sum("process_resident_memory_bytes", ""),
		cpuPct, rl, az, ep, c.errors - s.errorBase,
	}
	rec := make([]string, len(row))
	for i, v := range row {
		rec[i] = strconv.FormatFloat(v, 'f', -1, 64)
	}
	if err := s.w.Write(rec); err != nil {
		return err
	}
	// Flushed per row: a run cut short still leaves its samples.
	s.w.Flush()
	return s.w.Error()
}

func (s *sampler) scrape() (metrics, error) {
	resp, err := s.client.Get(s.url)
	if err != nil {
		return nil, fmt.Errorf("scrape: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: HTTP %s", s.url, resp.Status)
	}
	return parseMetrics(resp.Body)
}

// metrics maps a sample's name (without labels) to its label sets and values.
type metrics map[string][]labeled

type labeled struct {
	labels string
	value  float64
}

// parseMetrics reads the Prometheus text format, enough of it for sums by
// name: comments are skipped, and a line is NAME[{LABELS}] VALUE [TS].
func parseMetrics(r io.Reader) (metrics, error) {
	m := metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		name, labels, rest := l, "", ""
		if i := strings.IndexByte(l, '{'); i >= 0 {
			j := strings.LastIndexByte(l, '}')
			if j < i {
				return nil, fmt.Errorf("metrics line %d: unclosed label set", line)
			}
			name, labels, rest = l[:i], l[i+1:j], strings.TrimSpace(l[j+1:])
		} else if i := strings.IndexAny(l, " \t"); i >= 0 {
			name, rest = l[:i], strings.TrimSpace(l[i+1:])
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("metrics line %d: %q has no value", line, name)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d: %q: value %q: %w", line, name, fields[0], err)
		}
		m[name] = append(m[name], labeled{labels, v})
	}
	return m, sc.Err()
}

// sum adds the values of name whose label set contains labels ("" for all).
func (m metrics) sum(name, labels string) float64 {
	var total float64
	for _, l := range m[name] {
		if strings.Contains(l.labels, labels) {
			total += l.value
		}
	}
	return total
}

// procRSS reads VmRSS of /proc/PID/status, in bytes.
func procRSS(pid int) (int64, error) {
	name := fmt.Sprintf("/proc/%d/status", pid)
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, err
	}
	for l := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("%s: VmRSS %q: want NUMBER kB", name, strings.TrimSpace(rest))
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: VmRSS: %w", name, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("%s: no VmRSS line", name)
}

// procFDs counts the entries of /proc/PID/fd.
func procFDs(pid int) (int, error) {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	return len(entries), nil
}
