package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Series holds the samples CSV by column name; T is t_s.
type Series struct {
	T    []float64
	Cols map[string][]float64
}

// readCSV reads a samples CSV as runSample writes it. Every error names the
// file and line.
func readCSV(name string) (*Series, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%s:1: header: %w", name, err)
	}
	if len(header) == 0 || header[0] != "t_s" {
		return nil, fmt.Errorf("%s:1: first column %q, want t_s", name, strings.Join(header, ","))
	}
	s := &Series{Cols: map[string][]float64{}}
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		for i, field := range rec {
			v, err := strconv.ParseFloat(field, 64)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: column %s: %q is not a number", name, line, header[i], field)
			}
			if i == 0 {
				s.T = append(s.T, v)
			} else {
				s.Cols[header[i]] = append(s.Cols[header[i]], v)
			}
		}
	}
	return s, nil
}

// Loader is what the report needs of one loadgen --json result.
type Loader struct {
	Name        string            `json:"-"`
	Mode        string            `json:"mode"`
	Requests    uint64            `json:"requests"`
	RPS         float64           `json:"rps"`
	OK          uint64            `json:"ok"`
	OverLimit   uint64            `json:"over_limit"`
	DeniedTotal uint64            `json:"denied_total"`
	Hits        uint64            `json:"hits"`
	Errors      map[string]uint64 `json:"errors"`
	ErrorsTotal uint64            `json:"errors_total"`
}

func readLoader(name string) (Loader, error) {
	var l Loader
	b, err := os.ReadFile(name)
	if err != nil {
		return l, err
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return l, fmt.Errorf("%s: not a loadgen --json result: %w", name, err)
	}
	l.Name = strings.TrimSuffix(filepath.Base(name), ".json")
	return l, nil
}

// Limits are the pass/fail bounds. The defaults are those of run.sh.
type Limits struct {
	// Warmup is left out of the steady state. Default 2m.
	Warmup time.Duration
	// Window is how many samples at each end of the steady state are
	// averaged (by their median) for the warm and final levels. Default 3.
	Window int
	// GoroutineTol is how far the final goroutine level may be from the
	// warm level. Default 10 (each stream in flight holds a few).
	GoroutineTol float64
	// FDTol is how far the final descriptor count may be from the warm one.
	// Default 4.
	FDTol float64
	// RSSSlopePct bounds the RSS slope, in % of the steady mean per hour.
	// Default 5.
	RSSSlopePct float64
	// MinSteady is the fewest steady samples worth judging. Default 6.
	MinSteady int
	// RSSMinSpan is the shortest steady state whose RSS slope is judged:
	// over a few minutes the slope is the tail of the warm-up and sample
	// noise (±1 MiB of 60 over one minute reads as ±100 %/h), not a leak.
	// A shorter run reports the slope and says it was not judged. Default 15m.
	RSSMinSpan time.Duration
}

// DefaultLimits returns the documented defaults.
func DefaultLimits() Limits {
	return Limits{Warmup: 2 * time.Minute, Window: 3, GoroutineTol: 10, FDTol: 4, RSSSlopePct: 5, MinSteady: 6, RSSMinSpan: 15 * time.Minute}
}

// Stat sums up one column over the steady state.
type Stat struct {
	Name                  string
	First, Last, Min, Max float64
	Mean                  float64
	Warm, Final           float64 // medians of the first and last Window samples
	SlopePerHour          float64 // least squares, units per hour
}

// Check is one pass/fail criterion.
type Check struct {
	Name string
	Pass bool
	// NotJudged marks a check that the run was too short to decide; it
	// passes, and the verdict says so.
	NotJudged bool
	Detail    string
}

// Summary is the judged run.
type Summary struct {
	Limits       Limits
	Samples      int
	Steady       int
	SteadyFrom   float64 // t_s of the first steady sample
	SteadyTo     float64
	Stats        []Stat
	Loaders      []Loader
	LoaderErrors uint64
	Checks       []Check
	Pass         bool
}

// statColumns are summed up, in this order.
var statColumns = []string{"rss_bytes", "heap_inuse_bytes", "goroutines", "fds", "cpu_pct",
	"limit_hits_per_s", "authz_per_s", "extproc_per_s", "server_errors"}

// Summarize judges s (and the loaders' results) against lim.
func Summarize(s *Series, loaders []Loader, lim Limits) Summary {
	sum := Summary{Limits: lim, Samples: len(s.T), Loaders: loaders, Pass: true}
	first := len(s.T)
	for i, t := range s.T {
		if t >= lim.Warmup.Seconds() {
			first = i
			break
		}
	}
	steadyT := s.T[first:]
	sum.Steady = len(steadyT)
	if sum.Steady > 0 {
		sum.SteadyFrom, sum.SteadyTo = steadyT[0], steadyT[len(steadyT)-1]
	}
	stat := map[string]Stat{}
	for _, name := range statColumns {
		col, ok := s.Cols[name]
		if !ok || len(col) != len(s.T) || sum.Steady == 0 {
			continue
		}
		st := describe(name, steadyT, col[first:], lim.Window)
		stat[name] = st
		sum.Stats = append(sum.Stats, st)
	}
	add := func(c Check) {
		sum.Checks = append(sum.Checks, c)
		sum.Pass = sum.Pass && c.Pass
	}
	judged := func(name string, pass bool, detail string) Check {
		return Check{Name: name, Pass: pass, Detail: detail}
	}
	add(judged("steady samples", sum.Steady >= lim.MinSteady,
		fmt.Sprintf("%d after a %v warm-up (at least %d)", sum.Steady, lim.Warmup, lim.MinSteady)))
	if st, ok := stat["goroutines"]; ok {
		d := st.Final - st.Warm
		add(judged("goroutines back to the warm level", math.Abs(d) <= lim.GoroutineTol,
			fmt.Sprintf("warm %.0f, final %.0f (%+.0f, allowed ±%.0f), max %.0f", st.Warm, st.Final, d, lim.GoroutineTol, st.Max)))
	} else {
		add(judged("goroutines back to the warm level", false, "no goroutines column"))
	}
	if st, ok := stat["fds"]; ok {
		d := st.Final - st.Warm
		add(judged("file descriptors constant", math.Abs(d) <= lim.FDTol && st.Max-st.Warm <= 2*lim.FDTol,
			fmt.Sprintf("warm %.0f, final %.0f (%+.0f, allowed ±%.0f), max %.0f", st.Warm, st.Final, d, lim.FDTol, st.Max)))
	} else {
		add(judged("file descriptors constant", false, "no fds column"))
	}
	if st, ok := stat["rss_bytes"]; ok && st.Mean > 0 {
		pct := 100 * st.SlopePerHour / st.Mean
		detail := fmt.Sprintf("%+.2f MiB/h = %+.2f %% of the steady %.1f MiB per hour (bound < %.1f %%)",
			st.SlopePerHour/(1<<20), pct, st.Mean/(1<<20), lim.RSSSlopePct)
		span := time.Duration((sum.SteadyTo - sum.SteadyFrom) * float64(time.Second))
		if span < lim.RSSMinSpan {
			add(Check{Name: "RSS slope", Pass: true, NotJudged: true, Detail: fmt.Sprintf(
				"not judged: the steady state (%v) is shorter than %v, too short to tell a leak from warm-up; %s",
				span.Round(time.Second), lim.RSSMinSpan, detail)})
		} else {
			add(Check{Name: "RSS slope", Pass: pct < lim.RSSSlopePct, Detail: detail})
		}
	} else {
		add(judged("RSS slope", false, "no rss_bytes column"))
	}
	var serverErrs float64
	if col := s.Cols["server_errors"]; len(col) > 0 {
		serverErrs = col[len(col)-1]
	}
	for _, l := range loaders {
		sum.LoaderErrors += l.ErrorsTotal
	}
	add(judged("no errors", serverErrs == 0 && sum.LoaderErrors == 0,
		fmt.Sprintf("server error counters +%.0f, loader RPC errors %d", serverErrs, sum.LoaderErrors)))
	var decisions float64
	for _, c := range []string{"limit_hits_per_s", "authz_per_s", "extproc_per_s"} {
		decisions += stat[c].Mean
	}
	add(judged("traffic flowed", decisions > 0 && stat["limit_hits_per_s"].Min > 0,
		fmt.Sprintf("%.0f decisions/s on average, rate-limit hits at least %.0f/s", decisions, stat["limit_hits_per_s"].Min)))
	return sum
}

// describe sums up one steady column.
func describe(name string, t, v []float64, window int) Stat {
	st := Stat{Name: name, First: v[0], Last: v[len(v)-1], Min: v[0], Max: v[0]}
	var total float64
	for _, x := range v {
		st.Min, st.Max = math.Min(st.Min, x), math.Max(st.Max, x)
		total += x
	}
	st.Mean = total / float64(len(v))
	w := max(1, min(window, len(v)))
	st.Warm, st.Final = median(v[:w]), median(v[len(v)-w:])
	st.SlopePerHour = Slope(t, v) * 3600
	return st
}

// Slope is the least-squares slope of v over t (units of v per unit of t);
// 0 for fewer than two distinct t.
func Slope(t, v []float64) float64 {
	n := float64(len(t))
	if len(t) < 2 || len(t) != len(v) {
		return 0
	}
	var mt, mv float64
	for i := range t {
		mt += t[i]
		mv += v[i]
	}
	mt, mv = mt/n, mv/n
	var num, den float64
	for i := range t {
		num += (t[i] - mt) * (v[i] - mv)
		den += (t[i] - mt) * (t[i] - mt)
	}
	if den == 0 {
		return 0
	}
	return num / den
}

func median(v []float64) float64 {
	c := append([]float64(nil), v...)
	sort.Float64s(c)
	if len(c)%2 == 1 {
		return c[len(c)/2]
	}
	return (c[len(c)/2-1] + c[len(c)/2]) / 2
}

// WriteText prints the summary as run.sh shows it and summary.txt keeps it.
func (sum Summary) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "soak: %d samples, steady state %d samples from %.0fs to %.0fs (warm-up %v)\n",
		sum.Samples, sum.Steady, sum.SteadyFrom, sum.SteadyTo, sum.Limits.Warmup)
	fmt.Fprintf(&b, "%-18s %12s %12s %12s %12s %12s %14s\n", "series", "first", "last", "min", "max", "mean", "slope/hour")
	for _, st := range sum.Stats {
		scale, unit := 1.0, ""
		if strings.HasSuffix(st.Name, "_bytes") {
			scale, unit = 1<<20, " MiB"
		}
		f := func(x float64) string { return strconv.FormatFloat(x/scale, 'f', 2, 64) }
		fmt.Fprintf(&b, "%-18s %12s %12s %12s %12s %12s %14s\n", st.Name+unit, f(st.First), f(st.Last), f(st.Min), f(st.Max), f(st.Mean), f(st.SlopePerHour))
	}
	for _, l := range sum.Loaders {
		fmt.Fprintf(&b, "loader %-12s %-9s %10d requests %8.1f/s ok %d over_limit %d denied %d hits %d errors %d\n",
			l.Name, l.Mode, l.Requests, l.RPS, l.OK, l.OverLimit, l.DeniedTotal, l.Hits, l.ErrorsTotal)
		for code, n := range l.Errors {
			fmt.Fprintf(&b, "  error %s: %d\n", code, n)
		}
	}
	var notJudged []string
	for _, c := range sum.Checks {
		v := "PASS"
		switch {
		case !c.Pass:
			v = "FAIL"
		case c.NotJudged:
			v = "----"
			notJudged = append(notJudged, c.Name)
		}
		fmt.Fprintf(&b, "%s  %s: %s\n", v, c.Name, c.Detail)
	}
	switch {
	case !sum.Pass:
		b.WriteString("verdict: FAIL\n")
	case len(notJudged) > 0:
		fmt.Fprintf(&b, "verdict: PASS (not judged, run too short: %s)\n", strings.Join(notJudged, ", "))
	default:
		b.WriteString("verdict: PASS\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func runReport(args []string, stdout, stderr io.Writer) (bool, error) {
	lim := DefaultLimits()
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	csvName := fs.String("csv", "", "samples `file` written by soak sample (required)")
	loaderGlob := fs.String("loader", "", "`glob` of loadgen --json results (their errors count)")
	out := fs.String("out", "", "`dir`ectory for summary.txt and plot.svg (required)")
	title := fs.String("title", "soak", "plot title")
	fs.DurationVar(&lim.Warmup, "warmup", lim.Warmup, "left out of the steady state")
	fs.IntVar(&lim.Window, "window", lim.Window, "samples at each end whose median is the warm and final level")
	fs.Float64Var(&lim.GoroutineTol, "goroutine-tol", lim.GoroutineTol, "allowed final-minus-warm goroutines")
	fs.Float64Var(&lim.FDTol, "fd-tol", lim.FDTol, "allowed final-minus-warm file descriptors")
	fs.Float64Var(&lim.RSSSlopePct, "rss-slope-pct", lim.RSSSlopePct, "RSS slope bound, % of the steady mean per hour")
	fs.IntVar(&lim.MinSteady, "min-steady", lim.MinSteady, "fewest steady samples to judge")
	fs.DurationVar(&lim.RSSMinSpan, "rss-min-span", lim.RSSMinSpan, "shortest steady state whose RSS slope is judged")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return false, err
		}
		return false, &usageError{err}
	}
	if *csvName == "" || *out == "" {
		return false, &usageError{errors.New("--csv and --out are required")}
	}
	if lim.Window < 1 {
		return false, &usageError{fmt.Errorf("--window %d: want >= 1", lim.Window)}
	}
	s, err := readCSV(*csvName)
	if err != nil {
		return false, err
	}
	if len(s.T) == 0 {
		return false, fmt.Errorf("%s: no samples", *csvName)
	}
	var loaders []Loader
	if *loaderGlob != "" {
		names, err := filepath.Glob(*loaderGlob)
		if err != nil {
			return false, fmt.Errorf("--loader %q: %w", *loaderGlob, err)
		}
		for _, n := range names {
			l, err := readLoader(n)
			if err != nil {
				return false, err
			}
			loaders = append(loaders, l)
		}
	}
	sum := Summarize(s, loaders, lim)
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return false, err
	}
	var text strings.Builder
	if err := sum.WriteText(&text); err != nil {
		return false, err
	}
	if err := os.WriteFile(filepath.Join(*out, "summary.txt"), []byte(text.String()), 0o644); err != nil {
		return false, err
	}
	var svg strings.Builder
	if err := Plot(&svg, *title, s, lim.Warmup); err != nil {
		return false, err
	}
	if err := os.WriteFile(filepath.Join(*out, "plot.svg"), []byte(svg.String()), 0o644); err != nil {
		return false, err
	}
	_, err = io.WriteString(stdout, text.String())
	return sum.Pass, err
}
