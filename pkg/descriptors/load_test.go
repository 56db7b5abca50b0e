package descriptors

import (
	"encoding/json"
	"errors"
	"github.com/floodgate/floodgate/pkg/quota"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func domainNames(cfg *Config) string {
	var names []string
	for _, d := range cfg.Domains() {
		names = append(names, d.Name)
	}
	return strings.Join(names, ",")
}

// A mounted ConfigMap: the visible names are links into ..data, which links
// to a timestamped directory; Kubernetes swaps ..data on update.
func TestLoadConfigMapLayout(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "..2024_11_27_10_00_00.123", "b.yaml"),
		"domain: beta\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n")
	writeFile(t, filepath.Join(dir, "..2024_11_27_10_00_00.123", "a.yml"), "domain: alpha\ndescriptors:\n")
	for _, link := range []struct{ name, target string }{
		{"..data", "..2024_11_27_10_00_00.123"},
		{"b.yaml", "..data/b.yaml"},
		{"a.yml", "..data/a.yml"},
	} {
		if err := os.Symlink(link.target, filepath.Join(dir, link.name)); err != nil {
			t.Fatal(err)
		}
	}
	// Skipped: dot-files, other extensions, subdirectories.
	writeFile(t, filepath.Join(dir, ".hidden.yaml"), "not: valid")
	writeFile(t, filepath.Join(dir, "README.md"), "not yaml")
	writeFile(t, filepath.Join(dir, "sub", "c.yaml"), "domain: gamma\n")

	cfg, err := Load(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := domainNames(cfg); got != "alpha,beta" {
		t.Errorf("domains = %s, want alpha,beta", got)
	}
	// Problems and Files name the visible path, not the link target.
	want := []string{filepath.Join(dir, "a.yml"), filepath.Join(dir, "b.yaml")}
	if got := cfg.Domain("alpha").Files; len(got) != 1 || got[0] != want[0] {
		t.Errorf("alpha Files = %v", got)
	}
	if got := cfg.Domain("beta").Files; len(got) != 1 || got[0] != want[1] {
		t.Errorf("beta Files = %v", got)
	}
}

func TestLoadDirectoryReportsEveryFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), "domain: a\nbogus: 1\n")
	writeFile(t, filepath.Join(dir, "b.YAML"), "domain: b\ndescriptors:\n  - key: \"\"\n")
	writeFile(t, filepath.Join(dir, "c.yaml"), "domain: c\n")
	if err := os.Symlink("missing.yaml", filepath.Join(dir, "dangling.yaml")); err != nil {
		t.Fatal(err)
	}
	_, err := Load(dir, Options{})
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Load: %v", err)
	}
	got := err.Error()
	for _, want := range []string{
		filepath.Join(dir, "a.yaml") + `:2: bogus: unknown field "bogus"`,
		filepath.Join(dir, "b.YAML") + ":3: descriptors[0].key: must not be empty",
		filepath.Join(dir, "dangling.yaml") + ": cannot read config:",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems lack %q:\n%s", want, got)
		}
	}
	if len(ps) != 3 {
		t.Errorf("%d problems, want 3:\n%s", len(ps), got)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Error("errors.Is(err, fs.ErrNotExist) = false for the dangling link")
	}
}

func TestLoadMissingPath(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(path, Options{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load = %v, want fs.ErrNotExist", err)
	}
	if !strings.HasPrefix(err.Error(), path+": cannot read config") {
		t.Errorf("error = %q", err)
	}
}

func TestLoadEmptyDirectory(t *testing.T) {
	t.Parallel()
	cfg, err := Load(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Domains()) != 0 || cfg.Domain("x") != nil {
		t.Error("empty directory gave domains")
	}
}

func TestLoadMergeDirectory(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("testdata", "valid", "merged")
	if _, err := Load(dir, Options{}); err == nil {
		t.Fatal("two files of one domain loaded without MergeDomains")
	}
	cfg, err := Load(dir, Options{MergeDomains: true})
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Domain("shared")
	if got := d.Summary(); got != "domain shared: 2 rules from testdata/valid/merged/a.yaml, testdata/valid/merged/b.yml" {
		t.Errorf("Summary = %q", got)
	}
	// Each file's algorithm applies to its own rules.
	if r := d.Match(entries("a", "x")); r == nil || r.Limit.Algorithm.String() != "fixed_window" || r.Limit.Requests != 1 {
		t.Errorf("a=x: %+v", r)
	}
	if r := d.Match(entries("a", "y")); r == nil || r.Limit.Algorithm.String() != "sliding_window" || r.Limit.Requests != 2 {
		t.Errorf("a=y: %+v", r)
	}
}

func TestProjectExampleConfig(t *testing.T) {
	t.Parallel()
	cfg, err := Load(filepath.Join("..", "..", "examples", "config.yaml"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Domain("edge")
	if d == nil {
		t.Fatal("no domain edge")
	}
	if got, want := d.Summary(), "domain edge: 7 rules from ../../examples/config.yaml"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	for _, tc := range []struct {
		entries []string
		want    string
	}{
		{[]string{"generic_key", "login"}, "login"},
		{[]string{"api_key", "premium"}, "api-key-premium"},
		{[]string{"api_key", "k1"}, "api-key"},
		{[]string{"header_match", "export-csv"}, "export"},
		{[]string{"tenant", "t", "user", "u"}, "tenant-user"},
	} {
		if r := d.Match(entries(tc.entries...)); r == nil || r.Name != tc.want {
			t.Errorf("Match(%v) = %+v, want %s", tc.entries, r, tc.want)
		}
	}
}

func TestSummary(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, "domain: one\ndescriptors:\n  - key: k\n    rate_limit: {unlimited: true}\n")
	if got := cfg.Domain("one").Summary(); got != "domain one: 1 rule from test.yaml" {
		t.Errorf("Summary = %q", got)
	}
	cfg = mustParse(t, "domain: none\n")
	if got := cfg.Domain("none").Summary(); got != "domain none: 0 rules from test.yaml" {
		t.Errorf("Summary = %q", got)
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	srcs := []Source{
		{Name: "z.yaml", Data: []byte(`
domain: zeta
descriptors:
  - key: k
    value: v*
    share_threshold: true
    shadow_mode: true
    rate_limit: {name: n, unit: minute, requests_per_unit: 0}
  - key: open
    rate_limit: {unlimited: true}
`)},
		{Name: "a.yaml", Data: []byte(`
domain: alpha
algorithm: token_bucket
descriptors:
  - key: a
    descriptors:
      - key: b
        metadata: {m: [1]}
        rate_limit: {unit: second, requests_per_unit: 5, replaces: [{name: x}]}
`)},
	}
	cfg, err := Build(srcs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.MarshalIndent(cfg.Describe(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "domains": [
    {
      "name": "alpha",
      "files": [
        "a.yaml"
      ],
      "rules": [
        {
          "path": [
            {
              "key": "a"
            },
            {
              "key": "b"
            }
          ],
          "stat_name": "a.b",
          "algorithm": "token_bucket",
          "requests_per_unit": 5,
          "unit": "second",
          "burst": 5,
          "replaces": [
            "x"
          ],
          "metadata": {
            "m": [
              1
            ]
          },
          "source": "a.yaml:7"
        }
      ]
    },
    {
      "name": "zeta",
      "files": [
        "z.yaml"
      ],
      "rules": [
        {
          "path": [
            {
              "key": "k",
              "value": "v*"
            }
          ],
          "stat_name": "k_v*",
          "name": "n",
          "algorithm": "sliding_window",
          "requests_per_unit": 0,
          "unit": "minute",
          "shadow_mode": true,
          "shared_value": [
            "v*"
          ],
          "source": "z.yaml:4"
        },
        {
          "path": [
            {
              "key": "open"
            }
          ],
          "stat_name": "open",
          "unlimited": true,
          "source": "z.yaml:9"
        }
      ]
    }
  ]
}`
	if string(got) != want {
		t.Errorf("Describe JSON:\n%s\nwant:\n%s", got, want)
	}
}

// A Config is read by many requests at once; -race checks that matching
// only reads it.
func TestConcurrentMatch(t *testing.T) {
	t.Parallel()
	d := mustParse(t, matchConfig).Domain("m")
	done := make(chan struct{})
	for range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 200 {
				if r := d.Match(entries("k", "exa")); r == nil || r.Name != "k-ex-star" {
					t.Error("wrong match under concurrency")
					return
				}
				_ = d.Rules()
			}
		}()
	}
	for range 8 {
		<-done
	}
}

// TestUnlimitedWithRequestsLoads: the reference loads unlimited: true beside
// a requests_per_unit without a unit (and ignores the number).
func TestUnlimitedWithRequestsLoads(t *testing.T) {
	cfg, err := Parse("u.yaml", []byte("domain: d\ndescriptors:\n  - key: a\n    rate_limit: {requests_per_unit: 5, unlimited: true}\n"), Options{})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	r := cfg.Domain("d").Match([]Entry{{Key: "a", Value: "x"}})
	if r == nil || !r.Unlimited || r.Limit != (quota.Limit{}) {
		t.Fatalf("rule = %+v, want an unlimited rule with no limit", r)
	}
	// A unit beside unlimited is still an error.
	if _, err := Parse("u.yaml", []byte("domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, unlimited: true}\n"), Options{}); err == nil || !strings.Contains(err.Error(), "u.yaml:4: descriptors[0].rate_limit.unit: not allowed with unlimited: true") {
		t.Fatalf("unit beside unlimited: err = %v", err)
	}
}
