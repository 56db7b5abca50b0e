package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// panel is one chart of the plot: series sharing a y axis.
type panel struct {
	title string
	scale float64 // each value is divided by it
	lines []string
}

var panels = []panel{
	{"memory (MiB)", 1 << 20, []string{"rss_bytes", "heap_inuse_bytes"}},
	{"goroutines", 1, []string{"goroutines"}},
	{"open file descriptors", 1, []string{"fds"}},
	{"decisions per second (limit hits, Check, ext_proc requests)", 1, []string{"limit_hits_per_s", "authz_per_s", "extproc_per_s"}},
	{"sidecar CPU (% of one core)", 1, []string{"cpu_pct"}},
	{"server errors since start", 1, []string{"server_errors"}},
}

var colors = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd"}

const (
	plotWidth   = 900
	panelHeight = 150
	marginLeft  = 80
	marginRight = 170
	marginTop   = 58
	panelGap    = 58
)

// Plot writes a self-contained SVG of s: one panel per group of series,
// time in minutes on every x axis, the warm-up shaded.
func Plot(w io.Writer, title string, s *Series, warmup time.Duration) error {
	var b strings.Builder
	height := marginTop + len(panels)*(panelHeight+panelGap) + 10
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n",
		plotWidth, height, plotWidth, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", plotWidth, height)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", marginLeft, html.EscapeString(title))
	tMax := 1.0
	if n := len(s.T); n > 0 && s.T[n-1] > 0 {
		tMax = s.T[n-1] / 60
	}
	innerW := float64(plotWidth - marginLeft - marginRight)
	for i, p := range panels {
		top := float64(marginTop + i*(panelHeight+panelGap))
		x := func(tMin float64) float64 { return marginLeft + innerW*tMin/tMax }
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, name := range p.lines {
			for _, v := range s.Cols[name] {
				lo, hi = math.Min(lo, v/p.scale), math.Max(hi, v/p.scale)
			}
		}
		if math.IsInf(lo, 0) {
			lo, hi = 0, 1
		}
		lo = math.Min(lo, 0) // every axis starts at zero: a slope reads against the whole level
		if hi <= lo {
			hi = lo + 1
		}
		step := niceStep((hi - lo) / 4)
		hi = math.Ceil(hi/step) * step
		y := func(v float64) float64 { return top + panelHeight - panelHeight*(v-lo)/(hi-lo) }

		fmt.Fprintf(&b, `<g>`+"\n")
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="12" font-weight="bold">%s</text>`+"\n", marginLeft, top-8, html.EscapeString(p.title))
		if wm := warmup.Minutes(); wm > 0 {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="#eeeeee"/>`+"\n",
				x(0), top, x(math.Min(wm, tMax))-x(0), panelHeight)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#777777">warm-up</text>`+"\n", x(0)+4, top+12)
		}
		// y grid and labels
		for v := lo; v <= hi+step/2; v += step {
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#dddddd"/>`+"\n", marginLeft, y(v), x(tMax), y(v))
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", marginLeft-6, y(v)+4, formatTick(v))
		}
		// x ticks and labels
		xstep := niceStep(tMax / 6)
		for t := 0.0; t <= tMax+xstep/1000; t += xstep {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", x(t), top+panelHeight, x(t), top+panelHeight+4)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x(t), top+panelHeight+16, formatTick(t))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">minutes</text>`+"\n", x(tMax/2), top+panelHeight+30)
		// axes
		fmt.Fprintf(&b, `<polyline points="%d,%.1f %d,%.1f %.1f,%.1f" fill="none" stroke="black"/>`+"\n",
			marginLeft, top, marginLeft, top+panelHeight, x(tMax), top+panelHeight)
		for j, name := range p.lines {
			col := s.Cols[name]
			if len(col) != len(s.T) {
				continue
			}
			var pts strings.Builder
			for k, v := range col {
				fmt.Fprintf(&pts, "%.1f,%.1f ", x(s.T[k]/60), y(v/p.scale))
			}
			c := colors[j%len(colors)]
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="1.5"/>`+"\n", strings.TrimSpace(pts.String()), c)
			ly := top + 14 + float64(j)*16
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", x(tMax)+10, ly-4, x(tMax)+28, ly-4, c)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", x(tMax)+32, ly, html.EscapeString(name))
		}
		fmt.Fprintf(&b, `</g>`+"\n")
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// niceStep rounds raw up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func formatTick(v float64) string {
	if math.Abs(v) < 1e-9 {
		return "0"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}
