package descriptors

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// FuzzParse checks that no input makes Parse panic or return another error
// than Problems, and that a config that parses can be matched and
// described. The seeds are the fixtures.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*", "*.yaml"))
	for _, s := range seeds {
		if strings.Contains(s, "alias_bomb") {
			continue // slow by design: it would make minimizing crawl
		}
		if data, err := os.ReadFile(s); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(matchConfig))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data, Options{})
		if err != nil {
			if _, ok := err.(Problems); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		_ = cfg.Describe()
		for _, d := range cfg.Domains() {
			_ = d.Summary()
			rules := d.Rules()
			for _, r := range rules {
				if len(r.SharedValue) != len(r.Path) {
					t.Fatalf("rule %s: Path %d, SharedValue %d", r.StatName, len(r.Path), len(r.SharedValue))
				}
				var kv []string
				for _, e := range r.Path {
					kv = append(kv, e.Key, e.Value)
				}
				// Not necessarily r: an earlier pattern may take the
				// path's literal values. But never a foreign rule.
				if got := d.Match(entries(kv...)); got != nil && !slices.Contains(rules, got) {
					t.Fatalf("rule %s: Match returned a rule not in the domain", r.StatName)
				}
			}
		}
	})
}
