package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// series builds a Series of n samples every step seconds; each column is a
// function of t.
func series(n int, step float64, cols map[string]func(t float64) float64) *Series {
	s := &Series{Cols: map[string][]float64{}}
	for i := range n {
		t := float64(i) * step
		s.T = append(s.T, t)
		for name, f := range cols {
			s.Cols[name] = append(s.Cols[name], f(t))
		}
	}
	return s
}

const mib = 1 << 20

// healthy is an hour sampled every 10 s with flat levels: RSS 50 MiB
// (after a warm-up ramp), goroutines 160, fds 18, steady traffic.
func healthy() map[string]func(float64) float64 {
	return map[string]func(float64) float64{
		"rss_bytes": func(t float64) float64 {
			if t < 60 {
				return 20*mib + t/60*30*mib // the warm-up ramp, left out
			}
			return 50 * mib
		},
		"heap_inuse_bytes": func(float64) float64 { return 20 * mib },
		"goroutines":       func(t float64) float64 { return 160 + float64(int(t/10)%3) }, // jitter 160..162
		"fds":              func(float64) float64 { return 18 },
		"cpu_pct":          func(float64) float64 { return 20 },
		"limit_hits_per_s": func(float64) float64 { return 700 },
		"authz_per_s":      func(float64) float64 { return 200 },
		"extproc_per_s":    func(float64) float64 { return 140 },
		"server_errors":    func(float64) float64 { return 0 },
	}
}

func TestSlope(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		t, v []float64
		want float64
	}{
		{"line", []float64{0, 1, 2, 3}, []float64{1, 3, 5, 7}, 2},
		{"flat", []float64{0, 10, 20}, []float64{5, 5, 5}, 0},
		{"falling", []float64{0, 1, 2}, []float64{4, 2, 0}, -2},
		{"noise around a line", []float64{0, 1, 2, 3}, []float64{0, 2, 2, 4}, 1.2},
		{"one point", []float64{1}, []float64{9}, 0},
		{"same t", []float64{2, 2}, []float64{1, 3}, 0},
	} {
		if got := Slope(tc.t, tc.v); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: Slope = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	lim := DefaultLimits()
	lim.Warmup = time.Minute
	for _, tc := range []struct {
		name     string
		change   map[string]func(float64) float64
		loaders  []Loader
		wantPass bool
		wantFail string // the failing check's name
	}{
		{name: "healthy", wantPass: true},
		{
			name: "RSS grows 1 MiB per hour of 50: 2 %, under the bound",
			change: map[string]func(float64) float64{
				"rss_bytes": func(t float64) float64 { return 50*mib + t/3600*mib },
			},
			wantPass: true,
		},
		{
			name: "RSS grows 5 MiB per hour of about 52: over 5 %",
			change: map[string]func(float64) float64{
				"rss_bytes": func(t float64) float64 { return 50*mib + t/3600*5*mib },
			},
			wantFail: "RSS slope",
		},
		{
			name: "goroutines leak one a minute",
			change: map[string]func(float64) float64{
				"goroutines": func(t float64) float64 { return 160 + t/60 },
			},
			wantFail: "goroutines back to the warm level",
		},
		{
			name: "an fd leaks every ten minutes",
			change: map[string]func(float64) float64{
				"fds": func(t float64) float64 { return 18 + math.Floor(t/600) },
			},
			wantFail: "file descriptors constant",
		},
		{
			name: "server errors",
			change: map[string]func(float64) float64{
				"server_errors": func(t float64) float64 { return math.Floor(t / 1000) },
			},
			wantFail: "no errors",
		},
		{
			name:     "loader errors",
			loaders:  []Loader{{Name: "rl", Requests: 10, ErrorsTotal: 1, Errors: map[string]uint64{"Unavailable": 1}}},
			wantFail: "no errors",
		},
		{
			name: "no rate-limit traffic for a while",
			change: map[string]func(float64) float64{
				"limit_hits_per_s": func(t float64) float64 {
					if t > 1800 && t < 1900 {
						return 0
					}
					return 700
				},
			},
			wantFail: "traffic flowed",
		},
	} {
		cols := healthy()
		for k, f := range tc.change {
			cols[k] = f
		}
		s := series(361, 10, cols)
		sum := Summarize(s, tc.loaders, lim)
		if sum.Pass != tc.wantPass {
			var b strings.Builder
			_ = sum.WriteText(&b)
			t.Errorf("%s: Pass = %v, want %v\n%s", tc.name, sum.Pass, tc.wantPass, b.String())
		}
		for _, c := range sum.Checks {
			if c.Pass == (c.Name == tc.wantFail) {
				t.Errorf("%s: check %q Pass = %v (%s)", tc.name, c.Name, c.Pass, c.Detail)
			}
		}
	}
}

func TestSummarizeFigures(t *testing.T) {
	t.Parallel()
	cols := healthy()
	cols["rss_bytes"] = func(t float64) float64 { return 50*mib + t/3600*2*mib }
	lim := DefaultLimits()
	lim.Warmup = time.Minute
	sum := Summarize(series(361, 10, cols), nil, lim)
	if sum.Steady != 355 || sum.SteadyFrom != 60 || sum.SteadyTo != 3600 {
		t.Errorf("steady = %d samples from %v to %v, want 355 from 60 to 3600", sum.Steady, sum.SteadyFrom, sum.SteadyTo)
	}
	byName := map[string]Stat{}
	for _, st := range sum.Stats {
		byName[st.Name] = st
	}
	rss := byName["rss_bytes"]
	if got := rss.SlopePerHour / mib; math.Abs(got-2) > 1e-6 {
		t.Errorf("RSS slope = %v MiB/h, want 2", got)
	}
	if want := 50*mib + 60.0/3600*2*mib; rss.First != want {
		t.Errorf("RSS first = %v, want %v", rss.First, want)
	}
	if rss.Max != 52*mib || rss.Last != 52*mib {
		t.Errorf("RSS max, last = %v, %v, want 52 MiB", rss.Max/mib, rss.Last/mib)
	}
	g := byName["goroutines"]
	if g.Min != 160 || g.Max != 162 || g.Warm != 161 || g.Final != 161 {
		t.Errorf("goroutines min %v max %v warm %v final %v, want 160 162 161 161", g.Min, g.Max, g.Warm, g.Final)
	}
}

// TestSummarizeShortRun: a steady state under RSSMinSpan reports the RSS
// slope without judging it, and the verdict says so; the other checks still
// judge.
func TestSummarizeShortRun(t *testing.T) {
	t.Parallel()
	cols := healthy()
	cols["rss_bytes"] = func(t float64) float64 { return 50*mib + t/60*mib } // 60 MiB/h
	lim := DefaultLimits()
	lim.Warmup = time.Minute
	sum := Summarize(series(19, 10, cols), nil, lim) // 3 minutes, 2 of them steady
	var b strings.Builder
	if err := sum.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !sum.Pass || !strings.Contains(b.String(), "verdict: PASS (not judged, run too short: RSS slope)") {
		t.Errorf("Pass = %v, want a pass that says the RSS slope was not judged:\n%s", sum.Pass, b.String())
	}
	cols["fds"] = func(t float64) float64 { return 18 + t/10 }
	if sum := Summarize(series(19, 10, cols), nil, lim); sum.Pass {
		t.Error("a short run whose fds grow passes, want a fail")
	}
}

func TestSummarizeTooShort(t *testing.T) {
	t.Parallel()
	sum := Summarize(series(10, 10, healthy()), nil, DefaultLimits()) // 90 s: all warm-up
	if sum.Pass || sum.Steady != 0 {
		t.Errorf("Pass = %v with %d steady samples, want a fail with none", sum.Pass, sum.Steady)
	}
}

func TestPlotIsXML(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := Plot(&b, `soak <redis> & "memory"`, series(361, 10, healthy()), 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(&b)
	polylines, texts := 0, map[string]bool{}
	var root string
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("plot.svg does not parse as XML: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = el.Name.Local
			}
			if el.Name.Local == "polyline" {
				polylines++
				for _, a := range el.Attr {
					if a.Name.Local == "points" {
						checkPoints(t, a.Value)
					}
				}
			}
		case xml.CharData:
			texts[strings.TrimSpace(string(el))] = true
		}
	}
	if root != "svg" {
		t.Errorf("root element %q, want svg", root)
	}
	// One axis per panel plus one line per series.
	if want := len(panels) + 9; polylines != want {
		t.Errorf("%d polylines, want %d", polylines, want)
	}
	for _, want := range []string{`soak <redis> & "memory"`, "rss_bytes", "goroutines", "minutes", "warm-up", "60"} {
		if !texts[want] {
			t.Errorf("no text %q in the plot", want)
		}
	}
}

// checkPoints checks that every point of a polyline is two finite numbers.
func checkPoints(t *testing.T, points string) {
	t.Helper()
	for _, p := range strings.Fields(points) {
		x, y, ok := strings.Cut(p, ",")
		if !ok {
			t.Fatalf("point %q: want x,y", p)
		}
		for _, s := range []string{x, y} {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("point %q: %q is not a finite number", p, s)
			}
		}
	}
}

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	m, err := parseMetrics(strings.NewReader(`# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 141
floodgate_auth_decisions_total{policy="api",result="ok"} 10
floodgate_auth_decisions_total{policy="api",result="unavailable"} 2
floodgate_auth_decisions_total{policy="",result="unavailable"} 1
process_resident_memory_bytes 3.0285824e+07 1700000000000
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, labels string
		want         float64
	}{
		{"go_goroutines", "", 141},
		{"floodgate_auth_decisions_total", "", 13},
		{"floodgate_auth_decisions_total", `result="unavailable"`, 3},
		{"process_resident_memory_bytes", "", 30285824},
		{"absent", "", 0},
	} {
		if got := m.sum(tc.name, tc.labels); got != tc.want {
			t.Errorf("sum(%s, %s) = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if _, err := parseMetrics(strings.NewReader("x{a=\"b\" 1\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("unclosed labels: err = %v, want one naming line 1", err)
	}
	if _, err := parseMetrics(strings.NewReader("ok 1\nbad one\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad value: err = %v, want one naming line 2", err)
	}
}

// TestReport runs the report subcommand on a CSV and a loader result as
// run.sh writes them: the exit status is the verdict, the files are there.
func TestReport(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var csvText strings.Builder
	csvText.WriteString(strings.Join(columns, ",") + "\n")
	s := series(361, 10, healthy())
	for i, tv := range s.T {
		row := []string{strconv.FormatFloat(tv, 'f', -1, 64)}
		for _, c := range columns[1:] {
			v := 0.0
			if col, ok := s.Cols[c]; ok {
				v = col[i]
			}
			row = append(row, strconv.FormatFloat(v, 'f', -1, 64))
		}
		csvText.WriteString(strings.Join(row, ",") + "\n")
	}
	csvName := filepath.Join(dir, "samples.csv")
	writeFile(t, csvName, csvText.String())
	writeFile(t, filepath.Join(dir, "rl.json"), `{"mode":"","requests":100,"rps":10,"ok":90,"over_limit":10,"errors":{},"errors_total":0}`)
	out := filepath.Join(dir, "out")
	args := []string{"report", "--csv", csvName, "--loader", filepath.Join(dir, "*.json"), "--warmup", "1m", "--out", out}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, want 0\n%s%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "verdict: PASS") || !strings.Contains(stdout.String(), "loader rl") {
		t.Errorf("summary lacks the verdict or the loader:\n%s", stdout.String())
	}
	for _, f := range []string{"summary.txt", "plot.svg"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}

	writeFile(t, filepath.Join(dir, "rl.json"), `{"requests":100,"errors":{"DeadlineExceeded":3},"errors_total":3}`)
	stdout.Reset()
	if code := run(context.Background(), args, &stdout, &stderr); code != 1 {
		t.Errorf("with loader errors: exit %d, want 1\n%s", code, stdout.String())
	}

	writeFile(t, csvName, "t_s,rss_bytes\n0,1\n10,x\n")
	stderr.Reset()
	if code := run(context.Background(), args, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "samples.csv:3: column rss_bytes") {
		t.Errorf("bad CSV: exit %d, stderr %q; want 1 and the file, line and column", code, stderr.String())
	}
	if code := run(context.Background(), []string{"report", "--csv", csvName}, &stdout, &stderr); code != 2 {
		t.Errorf("no --out: exit %d, want 2", code)
	}
}

func writeFile(t *testing.T, name, text string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
