package descriptors

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/internal/shareddata"
)

// The compatibility suite: envoyproxy/ratelimit's own config files, kept in
// the shared data beside the repository. Its INDEX.md says which must load
// and which must fail; these tests read that table, so a file added to it
// is tested (or fails for want of an expectation here).

// sharedSuite returns the directory of the envoyproxy/ratelimit data files,
// ../shared/data/envoy-ratelimit beside the clone (or under
// $FLOODGATE_SHARED_DATA). Without it the test skips, or fails under CI=true.
func sharedSuite(t *testing.T) string {
	t.Helper()
	return shareddata.Dir(t, "envoy-ratelimit")
}

// indexRow is a row of INDEX.md's table of config-loader fixtures.
type indexRow struct {
	files  []string // paths relative to the suite
	result string   // "valid", "error" or "" (e.g. the merge pair)
}

// loaderFixtures reads INDEX.md's table for test/config/.
func loaderFixtures(t *testing.T, suite string) []indexRow {
	t.Helper()
	f, err := os.Open(filepath.Join(suite, "INDEX.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []indexRow
	inSection := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			inSection = strings.Contains(line, "test/config/")
			continue
		}
		if !inSection || !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 2 {
			continue
		}
		first, second := strings.TrimSpace(cells[0]), strings.TrimSpace(cells[1])
		if first == "file" || strings.HasPrefix(first, "---") {
			continue
		}
		var row indexRow
		for _, name := range strings.FieldsFunc(first, func(r rune) bool { return r == '/' || r == '+' || r == ' ' }) {
			row.files = append(row.files, filepath.Join("test", "config", strings.Trim(name, "`")))
		}
		switch {
		case strings.HasPrefix(second, "valid"):
			row.result = "valid"
		case strings.HasPrefix(second, "error"):
			row.result = "error"
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) < 10 {
		t.Fatalf("INDEX.md: found only %d rows in the test/config/ table; has its layout changed?", len(rows))
	}
	return rows
}

// compatErrors is what each of the suite's error fixtures must report: the
// line and a gist of the message. The reference reports no lines; these
// are the lines of the offending nodes.
var compatErrors = map[string]struct {
	line int
	gist string
	with string // another file loaded first (a duplicate domain)
}{
	"bad_limit_unit.yaml":      {6, `unit: unknown unit "foo"; allowed: second, minute`, ""},
	"bad_yaml.yaml":            {1, "invalid YAML", ""},
	"duplicate_key.yaml":       {6, `duplicate descriptor: key "key1" with value "value1" is already defined at this level`, ""},
	"empty_domain.yaml":        {1, "domain: missing", ""},
	"empty_key.yaml":           {3, "key: missing; every descriptor needs a non-empty key", ""},
	"misspelled_key.yaml":      {5, `unknown field "ratelimit" in a descriptor (did you mean "rate_limit"?)`, ""},
	"misspelled_key2.yaml":     {7, `unknown field "requestsperunit" in rate_limit (did you mean "requests_per_unit"?)`, ""},
	"non_map_list.yaml":        {3, "each descriptor must be a mapping", ""},
	"non_string_key.yaml":      {1, `field names must be strings, found "0.25"`, ""},
	"replaces_empty.yaml":      {10, "replaces[0].name: must not be empty", ""},
	"replaces_self.yaml":       {10, `replaces[0].name: names this rule's own limit "self"`, ""},
	"unlimited_with_unit.yaml": {6, "rate_limit.unit: not allowed with unlimited: true", ""},
	"duplicate_domain.yaml":    {1, `duplicate domain "test-domain"`, "basic_config.yaml"},
}

func TestCompatLoaderFixtures(t *testing.T) {
	t.Parallel()
	suite := sharedSuite(t)
	rows := loaderFixtures(t, suite)
	sawMerge := false
	for _, row := range rows {
		switch row.result {
		case "valid":
			for _, file := range row.files {
				t.Run(filepath.Base(file), func(t *testing.T) {
					if _, err := Load(filepath.Join(suite, file), Options{}); err != nil {
						t.Errorf("INDEX.md says valid; Load: %v", err)
					}
				})
			}
		case "error":
			for _, file := range row.files {
				t.Run(filepath.Base(file), func(t *testing.T) {
					testCompatError(t, suite, file)
				})
			}
		default:
			if len(row.files) == 2 && strings.Contains(row.files[0], "merge_domain") {
				sawMerge = true
				t.Run("merge_domain", func(t *testing.T) { testCompatMerge(t, suite, row.files) })
				continue
			}
			t.Errorf("INDEX.md row %v: neither valid nor error, and not the merge pair", row.files)
		}
	}
	if !sawMerge {
		t.Error("INDEX.md lists no merge_domain pair")
	}
}

func testCompatError(t *testing.T, suite, file string) {
	want, ok := compatErrors[filepath.Base(file)]
	if !ok {
		t.Fatalf("INDEX.md lists error fixture %s; add its line and message to compatErrors", file)
	}
	path := filepath.Join(suite, file)
	var sources []Source
	if want.with != "" {
		sources = append(sources, readSource(t, filepath.Join(suite, "test", "config", want.with)))
	}
	sources = append(sources, readSource(t, path))
	_, err := Build(sources, Options{})
	var got Problems
	if !errors.As(err, &got) {
		t.Fatalf("INDEX.md says error; Build returned %v", err)
	}
	for _, p := range got {
		if p.File == path && p.Line == want.line && strings.Contains(p.Error(), want.gist) {
			return
		}
	}
	t.Errorf("want a problem at %s:%d containing %q; got:\n%v", path, want.line, want.gist, got)
}

func readSource(t *testing.T, path string) Source {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return Source{Name: path, Data: data}
}

// The merge pair fails as a duplicate domain unless domains are merged;
// merged, both files' limits apply.
func testCompatMerge(t *testing.T, suite string, files []string) {
	var sources []Source
	for _, f := range files {
		sources = append(sources, readSource(t, filepath.Join(suite, f)))
	}
	_, err := Build(sources, Options{})
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 1 || ps[0].File != sources[1].Name || ps[0].Line != 2 ||
		!strings.Contains(ps[0].Msg, `duplicate domain "test-domain"`) {
		t.Errorf("without MergeDomains: got %v, want one duplicate-domain problem at %s:2", err, sources[1].Name)
	}
	cfg, err := Build(sources, Options{MergeDomains: true})
	if err != nil {
		t.Fatalf("with MergeDomains: %v", err)
	}
	d := cfg.Domain("test-domain")
	if got := len(d.Rules()); got != 2 {
		t.Fatalf("merged domain has %d rules, want 2", got)
	}
	if want := []string{sources[0].Name, sources[1].Name}; strings.Join(d.Files, ",") != strings.Join(want, ",") {
		t.Errorf("Files = %v, want %v", d.Files, want)
	}
	for _, tc := range []struct {
		key, value string
		want       uint64
	}{{"key1", "value1", 10}, {"key2", "value2", 20}} {
		r := d.Match(entries(tc.key, tc.value))
		if r == nil || r.Limit.Requests != tc.want {
			t.Errorf("Match(%s=%s) = %+v, want %d/minute", tc.key, tc.value, r, tc.want)
		}
	}
}

// The example configs of the reference and the configs of its integration
// test load as directories (each file a domain), as the reference loads
// them.
func TestCompatExampleAndIntegrationConfigs(t *testing.T) {
	t.Parallel()
	suite := sharedSuite(t)
	tests := []struct {
		path    string
		domains map[string]int // domain -> number of rules
	}{
		{"examples/ratelimit/config", map[string]int{"mongo_cps": 2, "rl": 17}},
		{"test/integration/runtime/current/ratelimit/config", map[string]int{"another": 6, "basic": 3, "share-threshold-test": 2}},
		{"test/integration/runtime/current/ratelimit/reload.yaml", map[string]int{"reload": 3}},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			cfg, err := Load(filepath.Join(suite, tc.path), Options{})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			got := map[string]int{}
			for _, d := range cfg.Domains() {
				got[d.Name] = len(d.Rules())
			}
			if len(got) != len(tc.domains) {
				t.Errorf("domains = %v, want %v", got, tc.domains)
			}
			for name, n := range tc.domains {
				if got[name] != n {
					t.Errorf("domain %s: %d rules, want %d", name, got[name], n)
				}
			}
		})
	}
}

// The reference's matching, checked on its own files: the expectations of
// its config tests and its integration scripts.
func TestCompatMatching(t *testing.T) {
	t.Parallel()
	suite := sharedSuite(t)
	load := func(t *testing.T, path string) *Config {
		t.Helper()
		cfg, err := Load(filepath.Join(suite, path), Options{})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	type want struct {
		requests  uint64
		unit      string
		unlimited bool
		shadow    bool
		name      string
	}
	type match struct {
		entries []string // key, value, key, value, ...
		want    *want    // nil: no rule
	}
	tests := []struct {
		file, domain string
		matches      []match
	}{
		{"test/config/basic_config.yaml", "test-domain", []match{
			{[]string{}, nil},
			{[]string{"key1", "something"}, nil},
			{[]string{"key1", "value1"}, nil}, // a node without a limit
			{[]string{"key2", "value2", "subkey", "subvalue"}, nil},
			{[]string{"key5", "value5", "subkey5", "subvalue"}, nil},
			{[]string{"key1", "value1", "subkey1", "something"}, &want{requests: 5, unit: "second"}},
			{[]string{"key1", "value1", "subkey1", "subvalue1"}, &want{requests: 10, unit: "second"}},
			{[]string{"key2", "something"}, &want{requests: 20, unit: "minute"}},
			{[]string{"key2", "value2"}, &want{requests: 30, unit: "minute"}},
			{[]string{"key2", "value3"}, nil}, // whitelisted: value without a limit
			{[]string{"key3", "foo"}, &want{requests: 1, unit: "hour"}},
			{[]string{"key4", "foo"}, &want{requests: 1, unit: "day", name: "key4_rate_limit"}},
			{[]string{"key5", "value5"}, &want{requests: 15, unit: "day"}},
			{[]string{"key5", "value5", "subkey5", "subvalue5"}, &want{requests: 25, unit: "day"}},
			{[]string{"key6", "foo"}, &want{unlimited: true}},
			{[]string{"key7", "unspecified_value"}, &want{requests: 70, unit: "minute"}},
		}},
		{"test/config/shadowmode_config.yaml", "test-domain", []match{
			{[]string{"key1", "value1", "subkey1", "something"}, &want{requests: 5, unit: "second"}},
			{[]string{"key1", "value1", "subkey1", "subvalue1"}, &want{requests: 10, unit: "second", shadow: true}},
			{[]string{"key2", "something"}, &want{requests: 20, unit: "minute", shadow: true}},
			{[]string{"key2", "value2"}, &want{requests: 30, unit: "minute"}},
		}},
		{"test/config/wildcard.yaml", "test-domain", []match{
			{[]string{"noVal", "foo1"}, &want{requests: 20, unit: "minute"}},
			{[]string{"wild", "foo1"}, &want{requests: 20, unit: "minute"}},
			{[]string{"wild", "foo"}, &want{requests: 20, unit: "minute"}},
			{[]string{"nestedWild", "val1", "wild", "goo2"}, &want{requests: 20, unit: "minute"}},
			{[]string{"wild", "bar"}, nil},
			{[]string{"noWild", "foo1"}, nil},
			{[]string{"midWild", "barab"}, &want{requests: 20, unit: "minute"}},
			{[]string{"midWild", "bar123b"}, &want{requests: 20, unit: "minute"}},
			{[]string{"midWild", "barb"}, &want{requests: 20, unit: "minute"}},
			{[]string{"midWild", "bara"}, nil},
			{[]string{"midWild", "xbarb"}, nil},
			{[]string{"multiWild", "foo123bar456baz"}, &want{requests: 10, unit: "minute"}},
			{[]string{"multiWild", "foobarbaz"}, &want{requests: 10, unit: "minute"}},
			{[]string{"multiWild", "foo123baz"}, nil},
			{[]string{"multiWild", "bar456baz"}, nil},
		}},
		{"examples/ratelimit/config/example.yaml", "rl", []match{
			{[]string{"foo", "x"}, &want{requests: 2, unit: "minute"}},
			{[]string{"foo", "x", "bar", "y"}, &want{requests: 3, unit: "minute"}},
			{[]string{"foo", "x", "bar", "bkthomps"}, &want{requests: 1, unit: "minute", name: "bkthomps"}},
			{[]string{"foo", "x", "bar", "banned"}, &want{requests: 0, unit: "minute", name: "banned_limit"}},
			{[]string{"foo", "x", "baz", "shady"}, &want{requests: 3, unit: "minute", shadow: true}},
			{[]string{"foo", "x", "bay", "y"}, &want{unlimited: true}},
			{[]string{"foo", "x", "qux", "y"}, nil},
			{[]string{"source_cluster", "proxy", "destination_cluster", "mock"}, &want{requests: 1, unit: "minute"}},
			{[]string{"source_cluster", "proxy"}, nil},
			{[]string{"category", "account"}, &want{requests: 4, unit: "minute"}},
			{[]string{"service", "service_1"}, &want{requests: 1, unit: "minute"}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			d := load(t, tc.file).Domain(tc.domain)
			if d == nil {
				t.Fatalf("no domain %q", tc.domain)
			}
			for _, m := range tc.matches {
				got := d.Match(entries(m.entries...))
				switch {
				case m.want == nil && got != nil:
					t.Errorf("Match(%v) = rule %s at line %d, want none", m.entries, got.StatName, got.Line)
				case m.want != nil && got == nil:
					t.Errorf("Match(%v) = none, want %+v", m.entries, *m.want)
				case m.want != nil:
					g := want{requests: got.Limit.Requests, unit: got.UnitName, unlimited: got.Unlimited, shadow: got.Shadow, name: got.Name}
					if g != *m.want {
						t.Errorf("Match(%v) = %+v, want %+v", m.entries, g, *m.want)
					}
				}
			}
		})
	}
}

func TestCompatReplacesAndMetadata(t *testing.T) {
	t.Parallel()
	suite := sharedSuite(t)
	cfg, err := Load(filepath.Join(suite, "examples/ratelimit/config/example.yaml"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Domain("rl")
	r := d.Match(entries("category", "account"))
	if got := strings.Join(r.Replaces, ","); got != "bkthomps,fake_name" {
		t.Errorf("Replaces = %q, want bkthomps,fake_name", got)
	}
	r = d.Match(entries("service", "service_2"))
	if !r.QuotaMode {
		t.Error("service_2: QuotaMode = false")
	}
	inner, _ := r.Metadata["service_with_quota"].(map[string]any)
	if inner["name"] != "service_2" {
		t.Errorf("Metadata = %v, want service_with_quota.name service_2", r.Metadata)
	}
	if r := d.Match(entries("unspec", "x")); !r.DetailedMetric {
		t.Error("unspec: DetailedMetric = false")
	}
}

// share_threshold: every value matching the pattern shares one counter at
// that level (SharedValue holds the pattern), other levels keep theirs.
func TestCompatShareThreshold(t *testing.T) {
	t.Parallel()
	suite := sharedSuite(t)
	cfg, err := Load(filepath.Join(suite, "test/config/share_threshold.yaml"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Domain("test-domain")
	tests := []struct {
		entries  []string
		requests uint64
		shared   []string
	}{
		{[]string{"files", "files/a.txt"}, 100, []string{"files/*"}},
		{[]string{"nested", "parent", "files", "nested/x"}, 200, []string{"", "nested/*"}},
		{[]string{"files", "top/1", "files", "nested/2"}, 300, []string{"top/*", "nested/*"}},
		{[]string{"route", "api/v1", "method", "GET"}, 60, []string{"api/*", ""}},
		{[]string{"path", "path/a", "file", "file/b", "type", "pdf"}, 120, []string{"path/*", "", ""}},
		{[]string{"user", "user/1", "resource", "res/2", "action", "read"}, 150, []string{"user/*", "res/*", ""}},
		{[]string{"file", "test1"}, 50, []string{""}}, // exact beats the shared pattern
		{[]string{"file", "test2"}, 100, []string{"test*"}},
		{[]string{"midpath", "/api/users/v1"}, 100, []string{"/api*v1"}},
		{[]string{"multiroute", "svc-a-ep-b-rpc"}, 50, []string{"svc*ep*rpc"}},
		{[]string{"tenant", "t1prod", "resource", "res-x-v2"}, 60, []string{"t*prod", "res*v2"}},
	}
	for _, tc := range tests {
		r := d.Match(entries(tc.entries...))
		if r == nil {
			t.Errorf("Match(%v) = none", tc.entries)
			continue
		}
		if r.Limit.Requests != tc.requests || strings.Join(r.SharedValue, "|") != strings.Join(tc.shared, "|") {
			t.Errorf("Match(%v) = %d shared %q, want %d shared %q", tc.entries, r.Limit.Requests, r.SharedValue, tc.requests, tc.shared)
		}
	}
}
