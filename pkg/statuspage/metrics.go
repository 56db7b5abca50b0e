package statuspage

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Match is one label matcher of a Num's selection.
type Match struct {
	Label string
	Value string
	// Not selects the series whose label differs from Value.
	Not bool
}

// Num is one number on the page: the sum of the series of Metric that
// every matcher selects, as /metrics has them (a counter's or a gauge's
// value), and its rate per second over the sampler's window.
type Num struct {
	Metric string `json:"metric"`
	// Selector is the selection in PromQL's syntax, `{rule="x",result!="ok"}`
	// ("" for every series of Metric): with Metric, what the page marks
	// the number with (data-metric, data-labels).
	Selector string  `json:"selector"`
	Value    float64 `json:"value"`
	// Rate is nil until the sampler has two samples.
	Rate *float64 `json:"rate_per_second"`

	match []Match
}

// Sel makes a Num of metric selecting the series that match every matcher.
func Sel(metric string, match ...Match) Num {
	return Num{Metric: metric, Selector: selector(match), match: match}
}

// Eq is a matcher of label = value; Ne one of label != value.
func Eq(label, value string) Match { return Match{Label: label, Value: value} }

// Ne is a matcher of label != value.
func Ne(label, value string) Match { return Match{Label: label, Value: value, Not: true} }

func selector(ms []Match) string {
	if len(ms) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(m.Label)
		if m.Not {
			b.WriteString("!=")
		} else {
			b.WriteByte('=')
		}
		b.WriteString(strconv.Quote(m.Value))
	}
	b.WriteByte('}')
	return b.String()
}

// series is one gathered series' labels and value.
type series struct {
	labels [][2]string // name, value
	value  float64
}

// snapshot is one Gather, by metric family name, kept to the families the
// page reads.
type snapshot struct {
	at       time.Time
	families map[string][]series
}

func (s *snapshot) sum(metric string, match []Match) (float64, bool) {
	ss, ok := s.families[metric]
	if !ok {
		return 0, false
	}
	var v float64
	for _, se := range ss {
		if matches(se.labels, match) {
			v += se.value
		}
	}
	return v, true
}

func matches(labels [][2]string, match []Match) bool {
	for _, m := range match {
		got := ""
		for _, l := range labels {
			if l[0] == m.Label {
				got = l[1]
				break
			}
		}
		if (got == m.Value) == m.Not {
			return false
		}
	}
	return true
}

// keep says whether a family is one the page reads.
func keep(name string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func gather(g prometheus.Gatherer, prefixes []string, now time.Time) (*snapshot, error) {
	mfs, err := g.Gather()
	s := &snapshot{at: now, families: make(map[string][]series)}
	for _, mf := range mfs {
		if !keep(mf.GetName(), prefixes) {
			continue
		}
		ss := make([]series, 0, len(mf.GetMetric()))
		for _, m := range mf.GetMetric() {
			var v float64
			switch {
			case m.Counter != nil:
				v = m.Counter.GetValue()
			case m.Gauge != nil:
				v = m.Gauge.GetValue()
			case m.Untyped != nil:
				v = m.Untyped.GetValue()
			default:
				continue // histograms and summaries are not shown
			}
			labels := make([][2]string, 0, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				labels = append(labels, [2]string{l.GetName(), l.GetValue()})
			}
			ss = append(ss, series{labels: labels, value: v})
		}
		s.families[mf.GetName()] = ss
	}
	// A Gatherer may return what it could gather with an error; show that.
	return s, err
}

// sampler keeps the last few snapshots, one per interval, for rates.
type sampler struct {
	g        prometheus.Gatherer
	prefixes []string
	interval time.Duration
	now      func() time.Time

	mu   sync.Mutex
	ring []*snapshot // oldest first, at most size
	size int
}

// run samples every interval until ctx ends.
func (s *sampler) run(ctx context.Context) error {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	s.sample()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.sample()
		}
	}
}

func (s *sampler) sample() {
	snap, _ := gather(s.g, s.prefixes, s.now())
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ring) == s.size {
		copy(s.ring, s.ring[1:])
		s.ring = s.ring[:s.size-1]
	}
	s.ring = append(s.ring, snap)
}

// oldest is the oldest sample kept, nil before the first.
func (s *sampler) oldest() *snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ring) == 0 {
		return nil
	}
	return s.ring[0]
}

// fill sets n's value from cur and its rate from the change since old
// (nil: no rate). A drop (series removed by a reload) counts as no change.
func fill(n *Num, cur, old *snapshot) {
	v, _ := cur.sum(n.Metric, n.match)
	n.Value = v
	if old == nil {
		return
	}
	dt := cur.at.Sub(old.at).Seconds()
	if dt < 0.5 {
		return
	}
	was, _ := old.sum(n.Metric, n.match)
	r := max(0, v-was) / dt
	n.Rate = &r
}
