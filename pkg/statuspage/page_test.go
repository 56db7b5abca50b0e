package statuspage_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate/floodgate/pkg/statuspage"
)

// clock is a settable clock for the sampler.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	reg         *prometheus.Registry
	hits, over  *prometheus.CounterVec
	auth        *prometheus.CounterVec
	clock       *clock
	status      *statuspage.Status
	tracker     *statuspage.Tracker
	backendDown bool
}

const hostile = `<script>alert("x")</script>`

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{reg: prometheus.NewRegistry(), clock: &clock{t: time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)}}
	vec := func(name string, labels ...string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: name}, labels)
		f.reg.MustRegister(v)
		return v
	}
	f.hits = vec("floodgate_ratelimit_total_hits", "domain", "rule")
	f.over = vec("floodgate_ratelimit_over_limit", "domain", "rule")
	f.auth = vec("floodgate_auth_decisions_total", "policy", "result")
	f.hits.WithLabelValues("api", "tenant").Add(0)
	f.over.WithLabelValues("api", "tenant").Add(0)
	f.hits.WithLabelValues("api", "other").Add(7)
	f.auth.WithLabelValues("docs", "ok").Add(3)
	f.auth.WithLabelValues("docs", "missing_credentials").Add(2)
	f.auth.WithLabelValues("docs", "quota_exceeded").Add(1)
	f.auth.WithLabelValues("api", "forbidden").Add(5)
	f.tracker = statuspage.NewTracker(statuspage.TrackerOptions{})
	var err error
	f.status, err = statuspage.New(statuspage.Options{
		Gatherer: f.reg,
		Now:      f.clock.Now,
		Tracker:  f.tracker,
		Config: func() statuspage.Config {
			return statuspage.Config{
				Sources: []statuspage.Source{{Name: "limits", Origin: "/etc/floodgate/" + hostile, Loaded: true, LoadedAt: f.clock.Now()}},
				Domains: []statuspage.Domain{{Name: "api", Files: []string{"api.yaml"}, Rules: []statuspage.Rule{
					{StatName: "tenant", Descriptor: "tenant=" + hostile, Limit: "5 per minute", Source: "api.yaml:3"},
				}}},
				Policies: []statuspage.Policy{{Name: "docs", Match: "*/docs/", Auth: "none"}},
			}
		},
		Backend: func() []statuspage.BackendNode {
			return []statuspage.BackendNode{{Name: "redis 127.0.0.1:6379", Up: !f.backendDown, Detail: hostile}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) get(t *testing.T, h http.HandlerFunc) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest("GET", "/debug/", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	return rec
}

var (
	cellRE   = regexp.MustCompile(`data-metric="([^"]*)" data-labels="([^"]*)" data-value="([^"]*)"`)
	scriptRE = regexp.MustCompile(`(?s)<script>(.*?)</script>`)
	styleRE  = regexp.MustCompile(`(?s)<style>(.*?)</style>`)
)

func unescape(s string) string {
	return strings.NewReplacer("&quot;", `"`, "&#34;", `"`, "&amp;", "&", "&lt;", "<", "&gt;", ">", "&#43;", "+").Replace(s)
}

// TestPageNumbersAreTheRegistrys: every marked number is the sum of the
// registry's series it names, and the auth denials are every result but ok.
func TestPageNumbersAreTheRegistrys(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.hits.WithLabelValues("api", "tenant").Add(12)
	f.over.WithLabelValues("api", "tenant").Add(4)
	body := f.get(t, f.status.HTML).Body.String()
	want := map[string]string{
		`floodgate_ratelimit_total_hits`:                             "19",
		`floodgate_ratelimit_total_hits{domain="api",rule="tenant"}`: "12",
		`floodgate_ratelimit_over_limit{domain="api",rule="tenant"}`: "4",
		`floodgate_auth_decisions_total{result!="ok"}`:               "8",
		`floodgate_auth_decisions_total{policy="docs",result="ok"}`:  "3",
		`floodgate_auth_decisions_total{policy="docs",result!="ok"}`: "3",
		`floodgate_ratelimit_over_limit`:                             "4",
	}
	got := map[string]string{}
	for _, m := range cellRE.FindAllStringSubmatch(body, -1) {
		got[m[1]+unescape(m[2])] = m[3]
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: page shows %q, want %q", k, got[k], v)
		}
	}
	if _, ok := got["floodgate_cache_requests_total{result=\"hit\"}"]; ok {
		t.Error("the page shows cache totals without any cache metric")
	}
}

// TestPageEscapes: config, sources and backend details are shown escaped;
// the page loads nothing from elsewhere and its CSP allows exactly its
// inline style and script.
func TestPageEscapes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rec := f.get(t, f.status.HTML)
	body := rec.Body.String()
	if strings.Contains(body, hostile) {
		t.Errorf("the page has %s unescaped", hostile)
	}
	if !strings.Contains(body, "&lt;script&gt;") {
		t.Error("the escaped value is not on the page")
	}
	for _, attr := range []string{" src=", " href=", "@import", "url("} {
		if strings.Contains(body, attr) {
			t.Errorf("the page has %q: it must load nothing", attr)
		}
	}
	csp := rec.Header().Get("Content-Security-Policy")
	for _, re := range []*regexp.Regexp{scriptRE, styleRE} {
		m := re.FindAllStringSubmatch(body, -1)
		if len(m) != 1 {
			t.Fatalf("%d matches of %s, want 1", len(m), re)
		}
		sum := sha256.Sum256([]byte(m[0][1]))
		if h := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(csp, h) {
			t.Errorf("CSP %q does not allow the inline block by %s", csp, h)
		}
	}
	if !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP %q: want default-src 'none' and no unsafe-inline", csp)
	}
	if !strings.Contains(body, `<noscript><meta http-equiv="refresh" content="2"></noscript>`) {
		t.Error("no meta refresh for browsers without JavaScript")
	}
}

// TestPageRates: rates are the change against the oldest sample kept, per
// second; before any sample there is none.
func TestPageRates(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if p := f.status.Page(); p.RateWindow != 0 || p.Totals[0].Rate != nil {
		t.Fatalf("rates before any sample: window %v, rate %v", p.RateWindow, p.Totals[0].Rate)
	}
	f.status.Sample()
	for range 15 { // more than the window: the oldest samples go
		f.clock.Add(time.Second)
		f.status.Sample()
	}
	f.hits.WithLabelValues("api", "tenant").Add(50)
	f.clock.Add(time.Second)
	p := f.status.Page()
	if p.RateWindow != 11 {
		t.Errorf("rate window %v s, want 11 (10 s of samples and the one since)", p.RateWindow)
	}
	r := p.Domains[0].Rules[0].Hits
	if r.Value != 50 || r.Rate == nil || *r.Rate != 50.0/11 {
		t.Errorf("tenant hits %v at %v/s, want 50 at %v/s", r.Value, r.Rate, 50.0/11)
	}
	if d := p.Policies[0].Denied; d.Rate == nil || *d.Rate != 0 {
		t.Errorf("docs denials rate %v, want 0", d.Rate)
	}
}

// TestPageJSON: the JSON has the same numbers, the backend and the top keys.
func TestPageJSON(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.backendDown = true
	f.tracker.Decided("api", desc("tenant", "acme"), limit, hit, over)
	rec := f.get(t, f.status.JSON)
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var p statuspage.Page
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Backend) != 1 || p.Backend[0].Up {
		t.Errorf("backend %+v, want one node down", p.Backend)
	}
	if len(p.TopKeys) != 1 || p.TopKeys[0].OverLimit != 1 || p.TopKeysSeen != 1 {
		t.Errorf("top keys %+v (%d seen), want one with 1", p.TopKeys, p.TopKeysSeen)
	}
	if strings.Contains(rec.Body.String(), "acme") {
		t.Error("the JSON shows a descriptor value")
	}
	if got := p.Domains[0].Rules[0].Hits; got.Metric != "floodgate_ratelimit_total_hits" || got.Selector != `{domain="api",rule="tenant"}` {
		t.Errorf("rule hits marked %s%s", got.Metric, got.Selector)
	}
}

func TestNewNeedsGatherer(t *testing.T) {
	t.Parallel()
	if _, err := statuspage.New(statuspage.Options{}); err == nil {
		t.Error("no error without a Gatherer")
	}
	if _, err := statuspage.New(statuspage.Options{Gatherer: prometheus.NewRegistry(), Interval: time.Minute, Window: time.Second}); err == nil {
		t.Error("no error for a window shorter than the interval")
	}
}
