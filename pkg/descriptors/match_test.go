package descriptors

import (
	"fmt"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/pkg/quota"
)

// entries builds request entries from key, value pairs.
func entries(kv ...string) []Entry {
	out := make([]Entry, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, Entry{Key: kv[i], Value: kv[i+1]})
	}
	return out
}

func mustParse(t testing.TB, yamlText string) *Config {
	t.Helper()
	cfg, err := Parse("test.yaml", []byte(yamlText), Options{})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

// matchConfig names each rule by rate_limit.name so the tables can say
// which rule matched.
const matchConfig = `
domain: m
descriptors:
  - key: k
    rate_limit: {name: k-only, unit: second, requests_per_unit: 1}
  - key: k
    value: exact
    rate_limit: {name: k-exact, unit: second, requests_per_unit: 1}
  - key: k
    value: ex*
    rate_limit: {name: k-ex-star, unit: second, requests_per_unit: 1}
  - key: k
    value: e*
    rate_limit: {name: k-e-star, unit: second, requests_per_unit: 1}
  - key: k
    value: "*z*y*x"
    rate_limit: {name: k-zyx, unit: second, requests_per_unit: 1}
  - key: k
    value: "ü*€"
    rate_limit: {name: k-unicode, unit: second, requests_per_unit: 1}
  - key: tenant
    descriptors:
      - key: user
        rate_limit: {name: tenant-user, unit: hour, requests_per_unit: 1000}
      - key: user
        value: admin
        descriptors:
          - key: path
            value: /admin/*
            rate_limit: {name: admin-path, unit: minute, requests_per_unit: 5}
  - key: tenant
    value: acme
    rate_limit: {name: acme, unit: minute, requests_per_unit: 50}
  - key: deep
    descriptors:
      - key: noLimitHere
        descriptors:
          - key: leaf
            rate_limit: {name: deep-leaf, unit: day, requests_per_unit: 3}
  - key: open
    rate_limit: {name: open, unlimited: true}
  - key: "bytes\x01"
    value: "v\xff\x00*"
    rate_limit: {name: bytes, unit: second, requests_per_unit: 1}
`

func TestMatch(t *testing.T) {
	t.Parallel()
	d := mustParse(t, matchConfig).Domain("m")
	tests := []struct {
		name    string
		entries []string
		want    string // rule name, "" for none
	}{
		{"exact beats patterns and key-only", []string{"k", "exact"}, "k-exact"},
		{"first matching pattern in file order", []string{"k", "exa"}, "k-ex-star"},
		{"a later pattern when the first does not match", []string{"k", "eeee"}, "k-e-star"},
		{"trailing star matches the empty rest", []string{"k", "ex"}, "k-ex-star"},
		{"key-only when no value matches", []string{"k", "other"}, "k-only"},
		{"key-only for an empty value", []string{"k", ""}, "k-only"},
		{"several stars, leading star", []string{"k", "__z__y__x"}, "k-zyx"},
		{"several stars, empty runs", []string{"k", "zyx"}, "k-zyx"},
		{"several stars, order matters", []string{"k", "xyz"}, "k-only"},
		{"several stars, suffix required", []string{"k", "zyx!"}, "k-only"},
		{"unicode pattern", []string{"k", "über 5 €"}, "k-unicode"},
		{"unicode pattern, wrong suffix", []string{"k", "über 5 $"}, "k-only"},
		// YAML's "\xff" is the code point U+00FF; a request may carry any
		// bytes, valid UTF-8 or not.
		{"control and invalid UTF-8 bytes", []string{"bytes\x01", "v\u00ff\x00\xfe\x80"}, "bytes"},
		{"a raw 0xff byte is not U+00FF", []string{"bytes\x01", "v\xff\x00"}, ""},
		{"unknown key", []string{"nope", "x"}, ""},
		{"no entries", []string{}, ""},
		{"nested key-only under key-only", []string{"tenant", "t1", "user", "u1"}, "tenant-user"},
		{"exact at level 1 has no children: deeper request gets nothing", []string{"tenant", "acme", "user", "u1"}, ""},
		{"shallower than the rule: nothing", []string{"tenant", "t1"}, ""},
		{"exact value at level 1 with a limit", []string{"tenant", "acme"}, "acme"},
		{"node without a limit at the end: nothing", []string{"tenant", "t1", "user", "admin"}, ""},
		{"level 2 exact beats key-only, then a pattern", []string{"tenant", "t1", "user", "admin", "path", "/admin/users"}, "admin-path"},
		{"level 3 pattern does not match", []string{"tenant", "t1", "user", "admin", "path", "/public"}, ""},
		{"deeper than the tree: nothing", []string{"tenant", "t1", "user", "u1", "extra", "x"}, ""},
		{"limitless middle level", []string{"deep", "1", "noLimitHere", "2", "leaf", "3"}, "deep-leaf"},
		{"stopping at the limitless level", []string{"deep", "1", "noLimitHere", "2"}, ""},
		{"unlimited rule is returned", []string{"open", "x"}, "open"},
		{"keys are case-sensitive", []string{"K", "exact"}, ""},
	}
	for _, tc := range tests {
		got := ""
		if r := d.Match(entries(tc.entries...)); r != nil {
			got = r.Name
		}
		if got != tc.want {
			t.Errorf("%s: Match(%q) = %q, want %q", tc.name, tc.entries, got, tc.want)
		}
	}
	if r := d.Match(entries("open", "x")); !r.Unlimited {
		t.Error("open: Unlimited = false")
	}
	// A nil entry reads as an empty key and matches nothing.
	if r := d.Match([]Entry{{}}); r != nil {
		t.Errorf("Match(nil entry) = %s", r.Name)
	}
	var none *Domain
	if r := none.Match(entries("k", "exact")); r != nil {
		t.Error("nil Domain matched")
	}
}

func TestGlob(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, value string
		want           bool
	}{
		{"*", "", true},
		{"*", "anything", true},
		{"a*", "a", true},
		{"a*", "ba", false},
		{"*a", "ba", true},
		{"*a", "ab", false},
		{"a*b", "ab", true},
		{"a*b", "a", false}, // prefix and suffix must not overlap
		{"ab*ba", "aba", false},
		{"ab*ba", "abba", true},
		{"a**b", "ab", true},
		{"a*b*c", "abc", true},
		{"a*b*c", "acb", false},
		{"a*b*c", "a-b-b-c", true},
		{"*b*b*", "bb", true},
		{"*b*b*", "b", false},
		{"x*y*x", "xyx", true},
		{"x*y*x", "xyyx", true},
		{"x*y*x", "xy", false},
	}
	for _, tc := range tests {
		g := compileGlob(tc.pattern)
		if got := g.match(tc.value); got != tc.want {
			t.Errorf("glob %q match %q = %v, want %v", tc.pattern, tc.value, got, tc.want)
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	d := mustParse(t, matchConfig).Domain("m")
	requests := [][]Entry{
		entries("k", "exact"),
		entries("k", "eeee"),
		entries("k", "__z__y__x"),
		entries("k", "other"),
		entries("tenant", "t1", "user", "admin", "path", "/admin/users"),
		entries("nope", "x"),
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, e := range requests {
			d.Match(e)
		}
	})
	if allocs != 0 {
		t.Errorf("Match allocates %v times per run, want 0", allocs)
	}
}

func TestRuleFields(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, `
domain: f
algorithm: fixed_window
descriptors:
  - key: generic_key
    value: login
    rate_limit: {unit: Minute, requests_per_unit: 5}
  - key: tenant
    descriptors:
      - key: path
        value: /files/*
        share_threshold: true
        shadow_mode: true
        detailed_metric: true
        value_to_metric: true
        quota_mode: true
        metadata: {owner: team-a}
        rate_limit:
          name: files
          unit: day
          requests_per_unit: 0
          algorithm: token_bucket
          burst: 7
          replaces: [{name: other}]
  - key: "with space"
    value: "quote\" back\\ 100%"
    rate_limit: {unit: year, requests_per_unit: 1}
  - key: a_b
    rate_limit: {unit: week, requests_per_unit: 1}
  - key: a
    value: b
    rate_limit: {unit: month, requests_per_unit: 1}
`)
	d := cfg.Domain("f")
	rules := d.Rules()
	if len(rules) != 5 {
		t.Fatalf("%d rules, want 5", len(rules))
	}
	login := rules[0]
	if login.StatName != "generic_key_login" || login.Limit.Algorithm.String() != "fixed_window" ||
		login.Limit.Unit.Seconds() != 60 || login.UnitName != "minute" || len(login.Path) != 1 || login.Line != 5 ||
		login.File != "test.yaml" || login.Name != "" {
		t.Errorf("login rule = %+v", *login)
	}
	files := rules[1]
	if got := fmt.Sprintf("%s|%v|%v|%d|%d|%s|%v|%v|%v|%v|%v|%v|%v|%d",
		files.StatName, files.Path, files.SharedValue, len(files.Path), files.Line, files.Limit.Algorithm,
		files.Limit.Requests, files.Limit.Burst, files.Shadow, files.DetailedMetric, files.ValueToMetric,
		files.QuotaMode, files.Replaces, len(files.Metadata)); got !=
		"tenant.path_/files/*|[{tenant  false} {path /files/* true}]|[ /files/*]|2|10|token_bucket|0|7|true|true|true|true|[other]|1" {
		t.Errorf("files rule = %s", got)
	}
	if got := rules[2].StatName; got != `with%20space_quote%22%20back%5C%20100%25` {
		t.Errorf("escaped StatName = %s", got)
	}
	if rules[2].Limit.Unit.Hours() != 365*24 {
		t.Errorf("year = %v", rules[2].Limit.Unit)
	}
	// "a_b" and "a"+"b" would both be "a_b": the later one is told apart.
	if rules[3].StatName != "a_b" || rules[4].StatName != "a_b~2" {
		t.Errorf("colliding StatNames = %q, %q", rules[3].StatName, rules[4].StatName)
	}
	if rules[3].Limit.Unit.Hours() != 7*24 || rules[4].Limit.Unit.Hours() != 30*24 {
		t.Errorf("week, month = %v, %v", rules[3].Limit.Unit, rules[4].Limit.Unit)
	}
	for _, r := range rules {
		for i := 0; i < len(r.StatName); i++ {
			if c := r.StatName[i]; c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' {
				t.Errorf("StatName %q has byte %#x, which is not quote-safe", r.StatName, c)
			}
		}
	}
}

func TestExtensionsFixture(t *testing.T) {
	t.Parallel()
	cfg, err := Load("testdata/valid/extensions.yaml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Domain("ext")
	tests := []struct {
		entries []string
		want    string // algorithm/requests/unit/burst/shadow/overdraw
	}{
		{[]string{"api_key", "x"}, "token_bucket/20/1s/0/false/false"},
		{[]string{"api_key", "premium"}, "token_bucket/200/1s/400/false/false"},
		{[]string{"login", "x"}, "fixed_window/5/1m0s/0/false/false"},
		{[]string{"status", "200"}, "token_bucket/0/1h0m0s/0/false/false"},
		{[]string{"weekly", "x"}, "sliding_window/1000/168h0m0s/0/false/false"},
		{[]string{"shadowed", "x"}, "token_bucket/16/720h0m0s/0/true/false"},
		{[]string{"llm_tokens", "x"}, "token_bucket/100000/1h0m0s/0/false/true"},
	}
	for _, tc := range tests {
		r := d.Match(entries(tc.entries...))
		if r == nil {
			t.Errorf("Match(%v) = none", tc.entries)
			continue
		}
		got := fmt.Sprintf("%s/%d/%s/%d/%v/%v", r.Limit.Algorithm, r.Limit.Requests, r.Limit.Unit, r.Limit.Burst, r.Shadow, r.Overdraw)
		if got != tc.want {
			t.Errorf("Match(%v) = %s, want %s", tc.entries, got, tc.want)
		}
	}
	if r := d.Match(entries("allowed", "x")); r != nil {
		t.Errorf("null rate_limit gave a rule: %+v", r)
	}
}

func TestAnchorsFixture(t *testing.T) {
	t.Parallel()
	cfg, err := Load("testdata/valid/anchors.yaml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Domain("anchors")
	for key, want := range map[string]uint64{"a": 10, "b": 20, "c": 10} {
		if r := d.Match(entries(key, "x")); r == nil || r.Limit.Requests != want || r.UnitName != "minute" {
			t.Errorf("%s: %+v, want %d/minute", key, r, want)
		}
	}
	md := d.Match(entries("c", "x")).Metadata
	got := fmt.Sprintf("%#v", md["list"])
	want := `[]interface {}{1, -2, 2.5, true, interface {}(nil), "text", "2001-12-14"}`
	if got != want {
		t.Errorf("metadata list = %s, want %s", got, want)
	}
}

func BenchmarkMatch(b *testing.B) {
	// A domain shaped like a real edge config: many exact values, a few
	// patterns, and nesting.
	var sb strings.Builder
	sb.WriteString("domain: bench\ndescriptors:\n")
	for i := range 200 {
		fmt.Fprintf(&sb, "  - key: generic_key\n    value: route%d\n    rate_limit: {unit: minute, requests_per_unit: %d}\n", i, i+1)
	}
	for i := range 10 {
		fmt.Fprintf(&sb, "  - key: path\n    value: /api/v%d/*\n    rate_limit: {unit: minute, requests_per_unit: 10}\n", i)
	}
	sb.WriteString("  - key: tenant\n    descriptors:\n      - key: user\n        rate_limit: {unit: hour, requests_per_unit: 1000}\n")
	cfg, err := Parse("bench.yaml", []byte(sb.String()), Options{})
	if err != nil {
		b.Fatal(err)
	}
	d := cfg.Domain("bench")
	cases := []struct {
		name    string
		entries []Entry
	}{
		{"exact", entries("generic_key", "route150")},
		{"pattern", entries("path", "/api/v9/users/42")},
		{"nested", entries("tenant", "acme", "user", "alice")},
		{"miss", entries("remote_address", "10.0.0.1")},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if d.Match(c.entries) == nil && c.name != "miss" {
						b.Fatal("no match")
					}
				}
			})
		})
	}
}

// TestDefaultAlgorithmOption: limits that name no algorithm, in files that
// name none, count with Options.DefaultAlgorithm; a file's or a rule's own
// algorithm wins; burst is judged against the algorithm in force.
func TestDefaultAlgorithmOption(t *testing.T) {
	t.Parallel()
	text := `
domain: d
descriptors:
  - key: plain
    rate_limit: {unit: minute, requests_per_unit: 5}
  - key: bursty
    rate_limit: {unit: minute, requests_per_unit: 5, burst: 10}
  - key: own
    rate_limit: {unit: minute, requests_per_unit: 5, algorithm: sliding_window}
`
	cfg, err := Parse("d.yaml", []byte(text), Options{DefaultAlgorithm: quota.TokenBucket})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.DefaultAlgorithm(); got != quota.TokenBucket {
		t.Errorf("DefaultAlgorithm() = %v", got)
	}
	d := cfg.Domain("d")
	for key, want := range map[string]quota.Algorithm{"plain": quota.TokenBucket, "bursty": quota.TokenBucket, "own": quota.SlidingWindow} {
		if r := d.Match(entries(key, "x")); r == nil || r.Limit.Algorithm != want {
			t.Errorf("%s: %+v, want %v", key, r, want)
		}
	}
	_, err = Parse("d.yaml", []byte(text), Options{DefaultAlgorithm: quota.FixedWindow})
	if err == nil || !strings.Contains(err.Error(), "this limit's algorithm is fixed_window (from the default)") {
		t.Errorf("burst under a fixed_window default: %v", err)
	}
	fileAlg := "algorithm: sliding_window\n" + text
	if _, err := Parse("d.yaml", []byte(fileAlg), Options{DefaultAlgorithm: quota.TokenBucket}); err == nil {
		t.Errorf("the file's sliding_window should win over the default, and refuse burst")
	}
}

// TestDescribeOverdraw: /debug/config shows overdraw on the rules that
// have it.
func TestDescribeOverdraw(t *testing.T) {
	t.Parallel()
	cfg, err := Load("testdata/valid/extensions.yaml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range cfg.Describe().Domains[0].Rules {
		if r.StatName == "llm_tokens" {
			found = r.Overdraw
		} else if r.Overdraw {
			t.Errorf("%s described with overdraw", r.StatName)
		}
	}
	if !found {
		t.Errorf("llm_tokens not described with overdraw")
	}
}
