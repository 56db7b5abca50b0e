package cacheconfig

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/internal/yamlconf"
)

// FuzzParse checks that no file makes Parse panic or return another error
// than Problems, and that every rule of a config that parses matches a
// request on its own path prefix (to one of its hosts).
func FuzzParse(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "*", "*.yaml"))
	for _, p := range paths {
		if strings.Contains(p, "alias_bomb") {
			continue
		}
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(matchConfig))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if err != nil {
			ps, ok := err.(yamlconf.Problems)
			if !ok || len(ps) == 0 {
				t.Fatalf("error of type %T: %v", err, err)
			}
			// Every problem names its file and, in the fuzzed one, a
			// line inside it (0: the whole file).
			// YAML breaks lines at \n, \r\n and a lone \r.
			lines := bytes.Count(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n")), []byte("\n")) +
				bytes.Count(data, []byte("\r")) - bytes.Count(data, []byte("\r\n")) + 1
			for _, p := range ps {
				if p.File == "" || p.Msg == "" || p.Line < 0 || (p.File == "fuzz.yaml" && p.Line > lines) {
					t.Fatalf("problem %+v: want a file, a line in it and a message", p)
				}
			}
			return
		}
		_ = cfg.Summary()
		for _, r := range cfg.Rules {
			host := "any.example"
			if len(r.Hosts) > 0 {
				host = r.Hosts[0]
			}
			if r.TTL > r.MaxTTL || r.MaxTTL <= 0 {
				t.Fatalf("rule %q: ttl %v, max_ttl %v", r.Name, r.TTL, r.MaxTTL)
			}
			if got := cfg.Match(host, r.PathPrefix); got == nil {
				t.Fatalf("rule %q matches no request to %q on its own path prefix", r.Name, host)
			}
		}
	})
}
