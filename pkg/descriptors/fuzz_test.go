package descriptors

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/internal/shareddata"
)

// addYAMLSeeds adds every *.yaml file under dir (but the alias bombs, slow
// by design: they would make minimizing crawl) as a seed.
func addYAMLSeeds(f *testing.F, dir string) {
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !isYAML(path) || strings.Contains(path, "alias_bomb") {
			return nil
		}
		if data, err := os.ReadFile(path); err == nil {
			f.Add(data)
		}
		return nil
	})
}

func isYAML(path string) bool {
	return strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")
}

// FuzzParse checks that no input makes Parse panic or return another error
// than Problems, that every problem names the file and a line within it,
// and that a config that parses can be matched and described, and parses
// again to the same config. The seeds are the fixtures and, when
// ../shared is beside the clone, envoyproxy/ratelimit's config files.
func FuzzParse(f *testing.F) {
	addYAMLSeeds(f, "testdata")
	if dir, ok := shareddata.Lookup(f, "envoy-ratelimit"); ok {
		addYAMLSeeds(f, dir)
	}
	f.Add([]byte(matchConfig))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data, Options{})
		if err != nil {
			ps, ok := err.(Problems)
			if !ok || len(ps) == 0 {
				t.Fatalf("error of type %T: %v", err, err)
			}
			// YAML breaks lines at \n, \r\n and a lone \r.
			lines := bytes.Count(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n")), []byte("\n")) +
				bytes.Count(data, []byte("\r")) - bytes.Count(data, []byte("\r\n")) + 1
			for _, p := range ps {
				if p.File != "fuzz.yaml" || p.Line < 0 || p.Line > lines || p.Msg == "" {
					t.Fatalf("problem %+v: want fuzz.yaml, a line in 0..%d and a message", p, lines)
				}
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz.yaml:") {
					t.Fatalf("error line %q does not start with the file", line)
				}
			}
			return
		}
		desc := cfg.Describe()
		again, err := Parse("fuzz.yaml", data, Options{})
		if err != nil {
			t.Fatalf("parsed once, then: %v", err)
		}
		b1, err1 := json.Marshal(desc)
		b2, err2 := json.Marshal(again.Describe())
		if err1 != nil || err2 != nil || !bytes.Equal(b1, b2) {
			t.Fatalf("parsed twice to different configs:\n%s\n%s", b1, b2)
		}
		for _, d := range cfg.Domains() {
			_ = d.Summary()
			rules := d.Rules()
			for _, r := range rules {
				if len(r.SharedValue) != len(r.Path) {
					t.Fatalf("rule %s: Path %d, SharedValue %d", r.StatName, len(r.Path), len(r.SharedValue))
				}
				if r.File != "fuzz.yaml" || r.Line < 1 {
					t.Fatalf("rule %s: defined at %s:%d", r.StatName, r.File, r.Line)
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

// globRegexp is a configured value as a regexp: each * any run of bytes.
func globRegexp(p string) *regexp.Regexp {
	parts := strings.Split(p, "*")
	for i := range parts {
		parts[i] = regexp.QuoteMeta(parts[i])
	}
	return regexp.MustCompile(`(?s)\A` + strings.Join(parts, ".*") + `\z`)
}

// FuzzMatch checks the matcher on any request descriptor (entries as
// KEY=VALUE lines) against the match fixture and, with ../shared, the
// reference's example config: a matched rule's path has the request's
// length, its keys, and at each level the request's value, a pattern that
// matches it, or no value; and a descriptor that spells a rule's path out
// in exact values gets that rule, since the exact key_value wins at every
// level.
func FuzzMatch(f *testing.F) {
	configs := []string{matchConfig}
	if dir, ok := shareddata.Lookup(f, "envoy-ratelimit", "examples", "ratelimit", "config"); ok {
		if data, err := os.ReadFile(filepath.Join(dir, "example.yaml")); err == nil {
			configs = append(configs, string(data))
		}
	}
	var domains []*Domain
	for i, c := range configs {
		cfg, err := Parse("match.yaml", []byte(c), Options{})
		if err != nil {
			f.Fatalf("config %d: %v", i, err)
		}
		domains = append(domains, cfg.Domains()...)
	}
	for _, d := range domains {
		for _, r := range d.Rules() {
			var lines []string
			for _, e := range r.Path {
				lines = append(lines, e.Key+"="+strings.ReplaceAll(e.Value, "*", "x"))
			}
			f.Add(strings.Join(lines, "\n"))
		}
	}
	f.Add("k=exz1y2x")
	f.Add("tenant=acme\nuser=admin\npath=/admin/x")
	f.Add("")
	f.Fuzz(func(t *testing.T, text string) {
		var req []Entry
		if text != "" {
			for _, line := range strings.Split(text, "\n") {
				k, v, _ := strings.Cut(line, "=")
				req = append(req, Entry{Key: k, Value: v})
			}
		}
		for _, d := range domains {
			r := d.Match(req)
			if r == nil {
				continue
			}
			if len(r.Path) != len(req) {
				t.Fatalf("%q in %s: rule %s with path %v", req, d.Name, r.StatName, r.Path)
			}
			for i, e := range r.Path {
				if e.Key != req[i].Key || (e.Value != "" && !globRegexp(e.Value).MatchString(req[i].Value)) {
					t.Fatalf("%q in %s: rule %s, level %d is %q=%q", req, d.Name, r.StatName, i, e.Key, e.Value)
				}
			}
		}
		for _, d := range domains {
			for _, r := range d.Rules() {
				if len(r.Path) != len(req) {
					continue
				}
				exact := true
				for i, e := range r.Path {
					exact = exact && e.Key == req[i].Key && e.Value == req[i].Value && !strings.Contains(e.Value, "*") && e.Value != ""
				}
				if exact {
					if got := d.Match(req); got != r {
						t.Fatalf("%q in %s: the exact rule %s, but Match gives %v", req, d.Name, r.StatName, got)
					}
				}
			}
		}
	})
}
