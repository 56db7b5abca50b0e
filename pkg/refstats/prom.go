package refstats

import (
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// promExporter shows the stats as statsd_exporter would after the
// reference's Prometheus sink fed it: counters by their mapped names and
// labels (stats that map to one series are summed), timers as histograms
// or summaries, a stat whose name another type took first left out.
type promExporter struct {
	mapper *Mapper

	mu        sync.Mutex
	types     map[string]string // metric name → the type that took it
	help      map[string]string // metric name → its help (the first mapping's)
	observers []prometheus.Collector
	byKey     map[string]prometheus.Observer // series → its timer observer
}

func newPromExporter(m *Mapper) *promExporter {
	return &promExporter{mapper: m, types: map[string]string{}, help: map[string]string{}, byKey: map[string]prometheus.Observer{}}
}

// claim reports whether name may be a metric of type typ, taking it if
// free; p.mu is held. The help of the first claim is the family's.
func (p *promExporter) claim(name, typ, help string) (string, bool) {
	if t, ok := p.types[name]; ok {
		return p.help[name], t == typ
	}
	p.types[name], p.help[name] = typ, help
	return help, true
}

func seriesKey(m *Mapped) string {
	var b strings.Builder
	b.WriteString(m.Name)
	for i, n := range m.LabelNames {
		b.WriteByte(0xff)
		b.WriteString(n)
		b.WriteByte('=')
		b.WriteString(m.LabelValues[i])
	}
	return b.String()
}

// observer makes the Prometheus side of a timer; nil when its mapping
// drops it or its name is taken by another type.
func (p *promExporter) observer(name string) (prometheus.Observer, float64, bool) {
	m := p.mapper.Map(name, kindObserver)
	if m.Drop || m.Name == "" {
		return nil, 0, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	key := seriesKey(&m)
	if o := p.byKey[key]; o != nil {
		return o, m.Scale, m.Scaled
	}
	help, ok := p.claim(m.Name, m.Observer, m.Help)
	if !ok {
		return nil, 0, false
	}
	labels := prometheus.Labels{}
	for i, n := range m.LabelNames {
		labels[n] = m.LabelValues[i]
	}
	var o prometheus.Observer
	var c prometheus.Collector
	if m.Observer == observeHistogram {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: m.Name, Help: help, ConstLabels: labels, Buckets: m.Buckets})
		o, c = h, h
	} else {
		sm := prometheus.NewSummary(prometheus.SummaryOpts{Name: m.Name, Help: help, ConstLabels: labels, Objectives: m.Objectives})
		o, c = sm, sm
	}
	p.byKey[key] = o
	p.observers = append(p.observers, c)
	return o, m.Scale, m.Scaled
}

// collector is the Prometheus view of a Stats. It describes nothing
// (unchecked), since its series come and go with the traffic.
type collector struct{ s *Stats }

func (collector) Describe(chan<- *prometheus.Desc) {}

type promSeries struct {
	m *Mapped
	v float64
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	p := c.s.prom
	sums := map[string]*promSeries{}
	var keys []string
	p.mu.Lock()
	for _, ctr := range c.s.snapshot() {
		v := ctr.v.Load()
		if v == 0 {
			continue // statsd_exporter sees a counter only once it moved
		}
		if ctr.mapped == nil {
			m := p.mapper.Map(ctr.name, kindCounter)
			ctr.mapped = &m
		}
		m := ctr.mapped
		if m.Drop || m.Name == "" {
			continue
		}
		if _, ok := p.claim(m.Name, kindCounter, m.Help); !ok {
			continue
		}
		val := float64(v)
		if m.Scaled {
			val *= m.Scale
		}
		k := seriesKey(m)
		if s := sums[k]; s != nil {
			s.v += val
			continue
		}
		sums[k] = &promSeries{m: m, v: val}
		keys = append(keys, k)
	}
	var gauges []promSeries
	for _, g := range c.s.gaugeList() {
		if g.mapped == nil {
			m := p.mapper.Map(g.name, kindGauge)
			g.mapped = &m
		}
		m := g.mapped
		if m.Drop || m.Name == "" {
			continue
		}
		if _, ok := p.claim(m.Name, kindGauge, m.Help); !ok {
			continue
		}
		gauges = append(gauges, promSeries{m: m, v: float64(g.read())})
	}
	observers := p.observers[:len(p.observers):len(p.observers)]
	help := func(name string) string { return p.help[name] }
	slices.Sort(keys)
	for _, k := range keys {
		s := sums[k]
		desc := prometheus.NewDesc(s.m.Name, help(s.m.Name), s.m.LabelNames, nil)
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, s.v, s.m.LabelValues...)
	}
	for _, g := range gauges {
		desc := prometheus.NewDesc(g.m.Name, help(g.m.Name), g.m.LabelNames, nil)
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, g.v, g.m.LabelValues...)
	}
	p.mu.Unlock()
	for _, o := range observers {
		o.Collect(ch)
	}
}

// Handler serves the stats in Prometheus' format (with Go's and the
// process's collectors, as the reference's listener has them), for the
// reference's PROMETHEUS_ADDR listener at /metrics; nil without
// Options.Prometheus.
func (s *Stats) Handler() http.Handler {
	if s.prom == nil {
		return nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collector{s})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
