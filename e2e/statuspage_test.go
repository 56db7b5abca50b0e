package e2e

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/pkg/loadgen"
)

// chromium is the browser the status-page test renders with (Debian's
// package chromium; make test-ui installs it).
const chromium = "/usr/bin/chromium"

// statusConfig limits each tenant to 5 a minute, so that most of the load
// is over the limit, and counts a path rule beside it that is never over.
const statusConfig = `domain: shop
algorithm: fixed_window
descriptors:
  - key: tenant
    rate_limit: {unit: minute, requests_per_unit: 5}
  - key: path
    value: /checkout
    rate_limit: {unit: minute, requests_per_unit: 100000}
`

// TestStatusPageInBrowser: after load (much of it over the limit) has
// stopped, /debug/ rendered by headless Chromium, its script included,
// shows for every marked number the value of the /metrics series it names,
// the top limited keys with their counts and no descriptor value in clear.
func TestStatusPageInBrowser(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("FLOODGATE_REQUIRE_CHROMIUM") == "1" {
			t.Fatalf("%s: %v (FLOODGATE_REQUIRE_CHROMIUM=1; make test-ui installs it)", chromium, err)
		}
		t.Skipf("%s not installed (make test-ui installs it)", chromium)
	}
	t.Parallel()
	dir := t.TempDir()
	cfg := writeFile(t, dir, "shop.yaml", statusConfig)
	s := startSidecar(t, "status", "--config", cfg)

	const keys, perKey = 4, 30
	o := loadgen.DefaultOptions()
	o.Addr = s.grpcAddr
	o.Domain = "shop"
	o.Descriptors = []loadgen.Descriptor{
		{{Key: "tenant", Value: "secret-tenant-" + loadgen.KeyPlaceholder}},
		{{Key: "path", Value: "/checkout"}},
	}
	o.Keys, o.Sequential = keys, true
	o.Requests = keys * perKey
	o.Concurrency, o.Connections = 4, 1
	o.Duration = 60 * time.Second
	windowHeadroom(t, time.Minute, 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := loadgen.Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != keys*perKey || res.ErrorsTotal != 0 || res.OverLimit == 0 {
		t.Fatalf("load: %d requests, %d errors, %d over limit; want %d, 0, some", res.Requests, res.ErrorsTotal, res.OverLimit, keys*perKey)
	}

	// The load has stopped: the page and /metrics must agree exactly.
	dom := renderDOM(t, "http://"+s.httpAddr+"/debug/")
	metrics := scrape(t, s)
	_, raw, err := s.get("/debug/")
	if err != nil {
		t.Fatal(err)
	}
	for name, page := range map[string]string{"rendered": dom, "served": raw} {
		cells := markedNumbers(page)
		if len(cells) < 10 {
			t.Fatalf("%s page: %d marked numbers, want at least 10:\n%s", name, len(cells), page)
		}
		for _, c := range cells {
			want := metrics.sum(c.metric, c.selector)
			if c.value != want {
				t.Errorf("%s page: %s%s shows %v, /metrics has %v", name, c.metric, c.selector, c.value, want)
			}
		}
		t.Logf("%s page: %d marked numbers agree with /metrics", name, len(cells))
		if strings.Contains(page, "secret-tenant-") {
			t.Errorf("%s page shows a descriptor value", name)
		}
	}
	over := metrics.sum("floodgate_ratelimit_over_limit", `{domain="shop",rule="tenant"}`)
	if over != float64(res.OverLimit) {
		t.Errorf("over_limit{rule=tenant} = %v, the load saw %d over-limit answers", over, res.OverLimit)
	}
	t.Logf("load: %d requests, %d over limit", res.Requests, res.OverLimit)
	if !strings.Contains(dom, "Live: updated every") {
		t.Errorf("the page's script did not run (or its update failed):\n%s", dom)
	}
	// Every tenant sent perKey; each key's count is its over-limit answers,
	// and together they are all of them.
	var top float64
	for _, m := range topKeyRE.FindAllStringSubmatch(dom, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		top += v
	}
	if got := len(topKeyRE.FindAllString(dom, -1)); got != keys || top != over {
		t.Errorf("top keys: %d rows summing to %v, want %d summing to %v", got, top, keys, over)
	}
}

// renderDOM loads url in headless Chromium with 3 s of virtual time (the
// page's script polls its JSON once in that time) and returns the DOM.
func renderDOM(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	profile := t.TempDir()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
		"--user-data-dir="+profile, "--virtual-time-budget=3000", "--dump-dom", url)
	cmd.Env = append(os.Environ(), "HOME="+profile)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	return stdout.String()
}

type markedNumber struct {
	metric, selector string
	value            float64
}

var (
	cellRE   = regexp.MustCompile(`data-metric="([^"]*)" data-labels="([^"]*)" data-value="([^"]*)"`)
	topKeyRE = regexp.MustCompile(`data-topkey="[0-9a-f]+" data-value="([0-9]+)"`)
)

// markedNumbers are the numbers a page marks with data-metric,
// data-labels and data-value.
func markedNumbers(page string) []markedNumber {
	var out []markedNumber
	for _, m := range cellRE.FindAllStringSubmatch(page, -1) {
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			v = -1 // never a counter's value: reported as a mismatch
		}
		out = append(out, markedNumber{metric: m[1], selector: html.UnescapeString(m[2]), value: v})
	}
	return out
}

// exposition is /metrics parsed: each series' name, labels and value.
type exposition []struct {
	name   string
	labels map[string]string
	value  float64
}

func scrape(t *testing.T, s *sidecar) exposition {
	t.Helper()
	code, body, err := s.get("/metrics")
	if err != nil || code != 200 {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	var e exposition
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, labels, value, err := parseSeries(line)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		e = append(e, struct {
			name   string
			labels map[string]string
			value  float64
		}{name, labels, value})
	}
	return e
}

// parseSeries parses `name{k="v",...} value` (Prometheus' text format).
func parseSeries(line string) (string, map[string]string, float64, error) {
	labels := map[string]string{}
	sp := strings.LastIndexByte(line, ' ')
	if sp < 0 {
		return "", nil, 0, fmt.Errorf("no value")
	}
	v, err := strconv.ParseFloat(line[sp+1:], 64)
	if err != nil {
		return "", nil, 0, err
	}
	head := line[:sp]
	name, rest, ok := strings.Cut(head, "{")
	if !ok {
		return head, labels, v, nil
	}
	rest = strings.TrimSuffix(rest, "}")
	for rest != "" {
		k, after, ok := strings.Cut(rest, `="`)
		if !ok {
			return "", nil, 0, fmt.Errorf("bad labels %q", rest)
		}
		var val strings.Builder
		i := 0
		for ; i < len(after) && after[i] != '"'; i++ {
			if after[i] == '\\' && i+1 < len(after) {
				i++
				if after[i] == 'n' {
					val.WriteByte('\n')
					continue
				}
			}
			val.WriteByte(after[i])
		}
		labels[k] = val.String()
		rest = strings.TrimPrefix(after[min(i+1, len(after)):], ",")
	}
	return name, labels, v, nil
}

// sum adds the series of metric that selector (`{k="v",k!="v"}`, as the
// page writes it) selects.
func (e exposition) sum(metric, selector string) float64 {
	type matcher struct {
		label, value string
		not          bool
	}
	var ms []matcher
	if sel := strings.TrimSuffix(strings.TrimPrefix(selector, "{"), "}"); sel != "" {
		for _, part := range regexp.MustCompile(`[a-z_]+!?="(?:[^"\\]|\\.)*"`).FindAllString(sel, -1) {
			not := strings.Contains(part[:strings.IndexByte(part, '=')+1], "!=")
			k, v, _ := strings.Cut(part, "=")
			k = strings.TrimSuffix(k, "!")
			uq, err := strconv.Unquote(v)
			if err != nil {
				uq = v
			}
			ms = append(ms, matcher{k, uq, not})
		}
	}
	var total float64
	for _, s := range e {
		if s.name != metric {
			continue
		}
		ok := true
		for _, m := range ms {
			if (s.labels[m.label] == m.value) == m.not {
				ok = false
			}
		}
		if ok {
			total += s.value
		}
	}
	return total
}

// TestExpositionSum: the checker the browser test compares with reads
// labels with escapes and sums what a selector selects.
func TestExpositionSum(t *testing.T) {
	t.Parallel()
	var e exposition
	for _, line := range []string{
		`floodgate_auth_decisions_total{policy="api",result="ok"} 3`,
		`floodgate_auth_decisions_total{policy="api",result="forbidden"} 2`,
		`floodgate_auth_decisions_total{policy="a\"b",result="quota_exceeded"} 5`,
		`floodgate_ratelimit_unknown_domain_total 7`,
	} {
		name, labels, v, err := parseSeries(line)
		if err != nil {
			t.Fatal(err)
		}
		e = append(e, struct {
			name   string
			labels map[string]string
			value  float64
		}{name, labels, v})
	}
	for sel, want := range map[string]float64{
		``:                             10,
		`{result!="ok"}`:               7,
		`{policy="api",result="ok"}`:   3,
		`{policy="a\"b"}`:              5,
		`{policy="api",result!="ok"}`:  2,
		`{policy="none",result!="ok"}`: 0,
	} {
		if got := e.sum("floodgate_auth_decisions_total", sel); got != want {
			t.Errorf("sum%s = %v, want %v", sel, got, want)
		}
	}
	if got := e.sum("floodgate_ratelimit_unknown_domain_total", ""); got != 7 {
		t.Errorf("unlabelled series: %v, want 7", got)
	}
}
